/** @moat/gui-agent/lab: the GUI scenario both halves of the lab test run (host test with sim too). */
export {
  type Dom0Environment,
  decodeOurPng,
  GUI_SCENARIO,
  guiDom0Steps,
  guiVmSteps,
  runScenario,
  type ScenarioSteps,
  scenarioPattern,
  type VmEnvironment,
} from './scenario.ts';
