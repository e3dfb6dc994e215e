// Package shard is ringtrain's training data: the token shard format, the
// dataset manifest, the pipeline that turns text into shards, and the data
// streams that decide which tokens every (stream, step) of a job reads.
//
// # Who calls it
//
//   - `ringtrain prepare` calls Prepare to tokenize text files into a dataset
//     directory: llm.c token shards (.bin), tokenizer.json and manifest.json.
//   - The trainer (coordinator side) calls Open, Dataset.CheckTokenizer and
//     NewSampler to validate a job before it starts: the corpus must have at least M
//     train shards and every stream at least b rows of T+1 tokens.
//   - Each worker calls Open, NewSampler with the job's (seed, M, b, T) and
//     NewLoader, then Loader.Batch for each stream it is assigned at each step,
//     and Loader.Val for evaluation.
//
// # Files
//
// A dataset directory holds <name>_train_NNNNNN.bin and <name>_val_NNNNNN.bin in
// llm.c's format (a 256 x int32 header, magic 20240520 version 1 with uint16
// tokens, or magic 20240801 version 7 with uint32 tokens), tokenizer.json, and
// manifest.json with every shard's token count and sha256 and the tokenizer's
// sha256. Directories of llm.c shards or nanoGPT's headerless train.bin/val.bin
// open too, without a manifest and so with fewer checks (see Open); without a
// tokenizer file the trainer reads them with the gpt2 tokenizer
// (trainer.DefaultShardTokenizer) unless the job names another. Training
// reads a shard row by row (positioned reads of T+1 tokens); LoadShard reads one
// whole, as a Tokens value at its file's width. Batches are []int32.
//
// # Instruction (SFT) datasets
//
// PrepareSFT writes one example per row of T+1 tokens (chat-templated instruction
// rows, padded with the end-of-text id) with two sidecars per shard, named and
// checksummed in the manifest: a .mask of one byte per token (is it a trained
// target) and a .rows of one count per row (its trained targets); see SFTInfo.
// NewExampleSampler draws whole examples per (stream, step) as NewSampler draws
// windows; the loader sets every target the mask does not train to -1, and
// Loader.TrainedTargets sums the row counts of a step's global batch without
// reading tokens: the loss denominator every rank derives alike. With Pack, rows hold
// several whole examples (first fit in example order) and a third sidecar, .seg,
// gives each token's example start; Loader.BatchPacked hands those starts to the
// trainer with the tokens.
//
// # Usage
//
//	m, err := shard.Prepare(ctx, shard.PrepareOptions{
//		Inputs: []string{"data/"}, Tokenizer: tok, TokenizerJSON: tokJSON, OutDir: "prep/",
//	})
//
//	ds, err := shard.Open("prep/")
//	err = ds.CheckTokenizer(shard.SHA256Hex(tokJSON), tok.VocabSize())
//	sampler, err := shard.NewSampler(ds.Manifest().TrainTokens(), seed, M, b, T)
//	ld, err := shard.NewLoader(ds, sampler, shard.LoaderOptions{})
//	inputs, targets := make([]int32, b*T), make([]int32, b*T) // (b, T)
//	for _, stream := range myStreams {
//		err = ld.Batch(ctx, stream, step, inputs, targets)
//		// forward/backward on this stream's micro-batch
//	}
//
// # Why the global batch does not depend on the world size
//
// A job fixes the number of data streams M along with b and T; the global batch
// of a step is the M micro-batches of (b, T), one per stream. The coordinator
// gives each worker a share of the streams, and a worker with several streams
// computes each stream's micro-batch in turn, accumulating gradients. Which
// tokens make up the global batch of step s is therefore decided by the streams
// alone: one worker with all M streams and M workers with one each read exactly
// the same tokens and, after the all-reduce, take the same step.
//
// A stream's data is a pure function of (seed, manifest, stream, step): stream m
// owns shards m, m+M, …, cuts each into rows of T+1 tokens (consecutive rows
// share a token; a row never spans shards) and visits all its rows in an order
// shuffled per epoch from (seed, m, epoch); a step takes the next b rows of that
// order. Nothing about reading position needs to be stored or replicated: when
// a worker dies and its streams move to another worker, or a step is aborted and
// recomputed after a membership change, the new owner computes the same rows
// from the step number and reads the same tokens. No row is skipped or read
// twice because of a failure, so each stream's rows are used exactly once per
// epoch (less those left over so that all streams have the same number of
// steps, and each shard's tail shorter than a row; see Sampler).
//
// The rows of a step are scattered over the stream's shards rather than b
// consecutive windows of one text: batches of contiguous text, read in order,
// are so correlated that a small model trains measurably worse on them.
//
// Tying streams to shards rather than to workers is what lets the world size
// change mid-epoch. A sampler that partitions the data by rank (PyTorch's
// DistributedSampler) changes every rank's sequence when the number of ranks
// changes, so an elastic job either restarts the epoch or loses its place. Here
// the number of ranks never enters the computation; only M does, and M is fixed
// for the life of a job. The price is that M bounds the parallelism (at most M
// workers do useful work) and the corpus must be prepared with at least M train
// shards, which is why Prepare writes at least MinShards (default 16).
//
// The core (NewSampler, Sampler.Windows, NewValSampler) does no I/O and is tested
// exhaustively; Loader is the thin part that verifies shard files once and reads
// rows from them.
package shard
