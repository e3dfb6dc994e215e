//go:build cuda

package cuda

import (
	_ "embed"
	"fmt"
	"regexp"
	"unsafe"
)

// opsPTX is kernels/ops.ptx, generated from kernels/ops.cu by scripts/gpu/gen_ptx.sh.
//
//go:embed kernels/ops.ptx
var opsPTX string

// ptxHeader is the first line gen_ptx.sh writes: the source and its sha256.
var ptxHeader = regexp.MustCompile(`^// ringtrain: generated from (\S+) \(sha256 ([0-9a-f]{64})\)`)

// ptxSource returns the source file and sha256 a PTX records, or an error when it
// records none.
func ptxSource(ptx string) (file, sum string, err error) {
	m := ptxHeader.FindStringSubmatch(ptx)
	if m == nil {
		return "", "", fmt.Errorf("cuda: PTX without a source header (regenerate it with scripts/gpu/gen_ptx.sh)")
	}
	return m[1], m[2], nil
}

// kernelNames are the entry points of ops.ptx the backend launches.
var kernelNames = []string{
	"encoder_forward", "encoder_backward_wte", "encoder_backward_wpe",
	"layernorm_forward", "layernorm_backward_dinp", "layernorm_backward_dwdb", "column_sums",
	"add_bias", "bias_backward",
	"attention_forward", "attention_forward_64", "attention_backward_d", "attention_backward_dq", "attention_backward_dk", "attention_backward_dv",
	"attention_backward_dv_64",
	"kv_append", "attention_decode",
	"gelu_forward", "gelu_backward", "residual_forward", "accumulate", "scale",
	"softmax_xent_forward", "sum_f64", "xent_backward", "sum_squares", "adamw",
}

// loadModule loads ptx into the current context and looks up every kernel; it runs on
// the executor's thread.
func loadModule(d *driver, ptx string) (map[string]uintptr, error) {
	img := append([]byte(ptx), 0)
	var mod uintptr
	if err := d.check("cuModuleLoadData", d.cuModuleLoadData(&mod, unsafe.Pointer(&img[0]))); err != nil {
		return nil, err
	}
	fns := make(map[string]uintptr, len(kernelNames))
	for _, name := range kernelNames {
		cname := append([]byte(name), 0)
		var f uintptr
		if err := d.check("cuModuleGetFunction "+name, d.cuModuleGetFunction(&f, mod, &cname[0])); err != nil {
			return nil, err
		}
		fns[name] = f
	}
	return fns, nil
}
