// Package examples ships the tiny shakespeare corpus inside the binary, so that
// `ringtrain local` trains on a fresh machine with nothing else present.
package examples

import _ "embed"

// TinyShakespeare is data/tinyshakespeare.txt (1,115,394 bytes; see data/README.md).
//
//go:embed data/tinyshakespeare.txt
var TinyShakespeare string
