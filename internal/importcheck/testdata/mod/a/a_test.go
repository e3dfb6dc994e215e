package a

import "example.com/m/d"

var _ = d.D
