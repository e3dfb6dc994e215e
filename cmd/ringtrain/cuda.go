//go:build cuda

package main

// The GPU binary registers the cuda backend (--backend cuda).
import _ "github.com/ringtrain/ringtrain/tensor/cuda"
