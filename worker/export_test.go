package worker

// The helpers the external tests (package worker_test) share with this package's
// own. Those tests run workers through localcluster, which imports worker, so they
// cannot be in package worker.
var (
	PrepareData      = prepareData
	TinySpec         = tinySpec
	NewTestLogger    = newTestLogger
	CheckEquivalent  = checkEquivalent
	ReferenceRun     = referenceRun
	CheckJobFinished = checkJobFinished
	RelL2            = relL2
)
