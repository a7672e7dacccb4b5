/**
 * A process's start-up steps that may refuse (a setting that is wrong, a database that cannot be
 * opened): the refusal's sentence on stderr and exit 1, never a stack trace.
 */
export function orExit<T>(read: () => T): T {
  try {
    return read();
  } catch (error) {
    return exit(error);
  }
}

/** The same for a step that is awaited. */
export async function orExitAsync<T>(step: Promise<T>): Promise<T> {
  return step.catch(exit);
}

function exit(error: unknown): never {
  console.error(error instanceof Error ? error.message : String(error));
  process.exit(1);
}
