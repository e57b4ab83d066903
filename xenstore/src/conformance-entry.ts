/** `@moat/xenstore/conformance`: the conformance suite (any xenstored) and the hostile-server suite. */
export {
  type CaseResult,
  type ConformanceCase,
  type ConformanceTarget,
  conformanceSuite,
  runCases,
} from './conformance.ts';
export { type HostileCase, hostileServerSuite, ScriptedServer } from './hostile-server.ts';
