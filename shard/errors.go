package shard

import "errors"

// Sentinel errors of the shard package. Every error the package returns about a
// file wraps one of these with %w and names the file (and, for a JSONL document,
// the line), so callers test the kind with errors.Is and show the message as is.
var (
	// ErrTruncated reports a shard whose length disagrees with its header: fewer
	// tokens than the header says, bytes past them, a partial token (an odd byte
	// count for uint16 tokens), or a file shorter than the 1024-byte header.
	ErrTruncated = errors.New("shard: truncated or mis-sized file")
	// ErrBadMagic reports a shard header that is not a supported llm.c header: an
	// unknown magic, a version that does not go with the magic, a negative token
	// count, or a header whose token width differs from the format the manifest or
	// the caller declared.
	ErrBadMagic = errors.New("shard: bad header magic or version")
	// ErrChecksum reports a file whose sha256 differs from the one in the manifest.
	ErrChecksum = errors.New("shard: checksum mismatch")
	// ErrTokenizerMismatch reports a dataset prepared with a different tokenizer
	// than the one the job uses.
	ErrTokenizerMismatch = errors.New("shard: tokenizer mismatch")
	// ErrBadToken reports a token id outside the vocabulary: >= the vocabulary
	// size, negative, or too wide for the shard format.
	ErrBadToken = errors.New("shard: token id out of range")
	// ErrBadManifest reports a manifest.json that cannot be used: malformed JSON,
	// an unknown version, a missing field, an unsafe or duplicate file name, or a
	// shard whose token count disagrees with the file.
	ErrBadManifest = errors.New("shard: bad manifest")
	// ErrNoShards reports a directory with neither a manifest.json nor any shard
	// file named in a recognised way.
	ErrNoShards = errors.New("shard: no shards found")
	// ErrBadDocument reports an input document Prepare cannot read: a JSONL line
	// that is not a JSON object or has no string "text" field.
	ErrBadDocument = errors.New("shard: bad input document")
	// ErrBadOptions reports an invalid option or argument; the message names the
	// field and its value.
	ErrBadOptions = errors.New("shard: invalid options")
	// ErrTooFewShards reports a train split with fewer shards than data streams.
	ErrTooFewShards = errors.New("shard: fewer shards than streams")
	// ErrTooFewTokens reports a split too small for what was asked of it: a stream
	// without enough tokens for one step, or a corpus too small to fill the
	// requested number of shards.
	ErrTooFewTokens = errors.New("shard: too few tokens")
	// ErrDatasetExists reports an output directory that already holds a dataset (a
	// manifest or shard files) when PrepareOptions.Overwrite is not set. Prepare
	// wraps it together with fs.ErrExist.
	ErrDatasetExists = errors.New("shard: output directory already holds a dataset")
	// ErrSamplerMismatch reports a Sampler built for other shard token counts than
	// those of the dataset it is used with.
	ErrSamplerMismatch = errors.New("shard: sampler does not match dataset")
)
