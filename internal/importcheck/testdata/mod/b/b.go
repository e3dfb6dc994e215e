package b

import "example.com/m/c"

// B is c's.
var B = c.C
