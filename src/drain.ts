/**
 * Set once the process got its stop signal: it still serves for SHUTDOWN_DELAY, but /readyz answers
 * 503 and every response asks the client to close its connection, so that load balancers and
 * keep-alive pools move to other replicas before this one stops accepting.
 */
export interface DrainState {
  readonly draining: boolean;
  start(): void;
}

export function createDrainState(): DrainState {
  let draining = false;
  return {
    get draining() {
      return draining;
    },
    start() {
      draining = true;
    },
  };
}
