/**
 * `@moat/firewall/testing`: tools for tests and demos of the engine, kept off the main
 * entry so that a VM's bundle holds only what it runs: frame builders and fixed rule sets
 * (`frames.frame4`, `frames.frame6`, `frames.acceptAll`, ...).
 */
export * as frames from './engine/frames.ts';
