package c

// C is c.
const C = 1
