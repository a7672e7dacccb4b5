/**
 * Production mode unless the environment says otherwise (NODE_ENV set to anything, `test` under
 * the tests, `development` on a laptop that wants it). Packages read NODE_ENV to decide how much
 * to show: Express renders its error page with the stack outside production (createApp pins its
 * own mode as well), and others keep debugging aids on.
 *
 * Imported first by each entry point (server/main.ts, server/worker-main.ts, server/cli.ts), so
 * that it is set before any package is loaded. There rather than in package.json's scripts or in
 * the build: the bundles are also started without npm (`node dist/server/main.js` in a container,
 * under a process manager), and the CLI and `npm run dev` run the sources through tsx; the entry
 * points are on every one of those paths.
 */
if (!process.env.NODE_ENV) process.env.NODE_ENV = 'production';
