// Package safetensors reads and writes the safetensors tensor file format used by
// Hugging Face: an 8-byte little-endian header length N, N bytes of JSON header, then
// one byte buffer holding every tensor's data.
//
// The header maps each tensor name to {"dtype", "shape", "data_offsets": [begin, end]}
// with offsets relative to the start of the byte buffer, plus an optional
// "__metadata__" object of string values. Data is row-major and little-endian.
//
// The format is small, and ringtrain's checkpoint writer needs to choose its own
// files, buffering and fsync points and to stream large tensors without staging the
// whole file in memory, so the package is written here rather than imported. It has
// no dependencies beyond the standard library.
//
// Writing:
//
//	f, _ := os.Create(path)
//	bw := bufio.NewWriter(f)
//	err := safetensors.Write(bw, []safetensors.Tensor{
//		safetensors.FromFloat32("wte.weight", []int{vocab, embd}, wte),
//	}, nil)
//	// then bw.Flush, f.Sync, f.Close
//
// Reading:
//
//	f, err := safetensors.Open(path)
//	if err != nil { ... }
//	defer f.Close()
//	wte, err := f.Float32("wte.weight")
//
// Read validates the whole header before returning: the header length against the
// file size, the JSON, every dtype, shape and offset, that tensors neither overlap nor
// leave gaps, and that the buffer holds nothing after the last tensor. Later reads of
// tensor data therefore only fail on I/O errors. No input, however malformed, makes
// the reader panic; malformed input is reported as ErrCorrupt naming the file and,
// where there is one, the tensor.
package safetensors
