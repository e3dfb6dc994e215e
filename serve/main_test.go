package serve

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that no test leaves a goroutine behind, the tensor package's
// process-wide kernel helpers excepted.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/ringtrain/ringtrain/tensor.(*helperPool).loop"))
}
