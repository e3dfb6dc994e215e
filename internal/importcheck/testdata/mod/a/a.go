package a

import (
	"fmt"

	"example.com/m/b"
)

var _ = fmt.Sprint(b.B)
