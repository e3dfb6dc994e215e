package allreduce

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if os.Getenv(childRankEnv) != "" { // a rank process of TestProcessKilledMidReduction
		os.Exit(childRank())
	}
	goleak.VerifyTestMain(m)
}
