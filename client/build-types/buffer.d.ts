// The `standardwebhooks` library's declarations name Node's `Buffer` (its verify and sign take
// one). This package is built without Node's types, so that it cannot lean on Node; for its build
// only, Buffer is declared as what it is at least, a Uint8Array. Nothing shipped names it: the
// package's own declarations never expose the library's types. (The repository's tsconfig has
// Node's own Buffer and leaves this file out.)
interface Buffer extends Uint8Array {}
