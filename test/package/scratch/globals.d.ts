// The program reads what the test hands it from process.env, as server code does; this project has
// no Node types, so that the package is shown to need none.
declare const process: { env: Record<string, string | undefined> };
