package d

// D is d.
const D = 1
