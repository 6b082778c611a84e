// A tiny sequential check runner: one line per check, a summary, and the
// contract violations (responses that do not match schema/openapi.yaml)
// attributed to the check during which they were seen.
import { AssertionError } from 'node:assert';

export class Abort extends Error {}

export class Runner {
  constructor({ verbose = false, skip = [] } = {}) {
    this.verbose = verbose;
    this.skip = new Set(skip);
    this.passed = 0;
    this.failed = 0;
    this.skipped = 0;
    this.failures = [];
    this.violations = [];  // contract violations of the running check
    this.section = '';
    this.aborted = false;
  }

  // Starts a section; returns false (and counts nothing) when --skip names it.
  begin(section) {
    this.section = section;
    if (this.aborted) return false;
    if (this.skip.has(section)) {
      console.log(`\n== ${section} (skipped by --skip)`);
      return false;
    }
    console.log(`\n== ${section}`);
    return true;
  }

  // Called by the API client for every response that departs from the contract.
  violation(problem) {
    this.violations.push(problem);
    if (this.verbose) console.log(`   contract: ${problem}`);
  }

  log(line) {
    if (this.verbose) console.log(`   ${line}`);
  }

  // Runs one check. A check fails when it throws or when any response seen
  // during it departs from the contract. A `critical` check that throws
  // stops the run (later checks need what it makes).
  async check(name, fn, { critical = false } = {}) {
    if (this.aborted) {
      this.skipped += 1;
      if (this.verbose) console.log(`SKIP  ${this.section}: ${name} (an earlier critical check failed)`);
      return undefined;
    }
    this.violations = [];
    let result;
    let error = null;
    const started = Date.now();
    try {
      result = await fn();
    } catch (caught) {
      error = caught;
    }
    const violations = this.violations;
    this.violations = [];
    const ms = Date.now() - started;
    if (!error && violations.length === 0) {
      this.passed += 1;
      console.log(`ok    ${this.section}: ${name} (${ms} ms)`);
      return result;
    }
    this.failed += 1;
    const reasons = [];
    if (error) reasons.push(describe(error));
    for (const v of violations) reasons.push(`contract: ${v}`);
    this.failures.push({ name: `${this.section}: ${name}`, reasons });
    console.log(`FAIL  ${this.section}: ${name} (${ms} ms)`);
    for (const reason of reasons) console.log(`      ${reason.replace(/\n/g, '\n      ')}`);
    if (critical && error) {
      // A critical check whose responses only depart from the schema made
      // what later checks need; one that threw did not.
      this.aborted = true;
      console.log('      (critical: every later check depends on it; stopping here)');
    }
    return undefined;
  }

  // Prints the summary; returns the process exit code.
  summary() {
    console.log('\n== summary');
    for (const failure of this.failures) console.log(`FAIL  ${failure.name}: ${failure.reasons[0].split('\n')[0]}`);
    if (this.skip.size) console.log(`sections skipped by --skip: ${[...this.skip].join(', ')}`);
    if (this.aborted) console.log('stopped after a critical failure: the later sections did not run');
    console.log(`${this.passed} passed, ${this.failed} failed, ${this.skipped} skipped`);
    return this.failed === 0 && !this.aborted ? 0 : 1;
  }
}

function describe(error) {
  if (error instanceof AssertionError) {
    // The line of the test that asserted, so that a failure can be found.
    const frame = (error.stack || '').split('\n').find((l) => /(contract|stream)\.mjs:\d+/.test(l));
    const where = frame ? ` [${frame.match(/(contract|stream)\.mjs:\d+/)[0]}]` : '';
    const base = error.generatedMessage ? 'values differ' : error.message.split('\n')[0];
    if ('actual' in error && error.operator !== 'fail') {
      return `${base}: got ${short(error.actual)}, expected ${short(error.expected)}${where}`;
    }
    return `${error.message}${where}`;
  }
  if (error?.code === 'ECONNREFUSED') return `connection refused (${error.address}:${error.port}): is the server running?`;
  return error?.stack?.split('\n').slice(0, 3).join('\n') || String(error);
}

function short(value) {
  const text = typeof value === 'string' ? JSON.stringify(value) : JSON.stringify(value, null, 0);
  return text && text.length > 400 ? `${text.slice(0, 400)}…` : text;
}
