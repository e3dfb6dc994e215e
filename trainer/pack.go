package trainer

import "context"

// PackedSource is a BatchSource that may hold packed rows, several whole examples to a
// row (a packed SFT dataset, shard.Loader). When Packed is true the trainer reads
// every micro-batch with BatchPacked, which also fills each input position's example
// start (b,T), and runs model.GPT.ForwardPacked: positions restart at 0 in each
// example and attention is blocked between examples. A source that is not packed
// trains as before, through Batch.
type PackedSource interface {
	Packed() bool
	BatchPacked(ctx context.Context, stream int, step int64, inputs, targets, start []int32) error
}

// PackedValSource is the same for the evaluation batches (shard.ValIterator).
type PackedValSource interface {
	Packed() bool
	BatchPacked(ctx context.Context, i int, inputs, targets, start []int32) error
}

// packedSource returns data as a PackedSource when its rows are packed, else nil.
func packedSource(data BatchSource) PackedSource {
	if p, ok := data.(PackedSource); ok && p.Packed() {
		return p
	}
	return nil
}
