// Evaluates IAM requests against identity policies with @cloud-copilot/iam-simulate.
//
// Run by devtools' IamAuthorizer (devtools/src/iam/evaluator.rs) as a child process that
// speaks JSON lines: one request object per stdin line, one answer object per stdout line,
// answered in order, each carrying the request's "id". It exits when stdin closes.
//
//   {"id":1,"op":"load","roles":{"<role>":{"policies":[{"name":"...","policy":{...}}]}}}
//     -> {"id":1,"ok":true}
//   {"id":2,"op":"evaluate","items":[{"role":"<role>","principal":"arn:...","action":"ssm:GetParameter",
//       "resource":"arn:...","accountId":"123456789012","context":{"aws:TagKeys":["a"]},
//       "knownKeys":["aws:TagKeys","/^aws:resourcetag\\//"]}]}
//     (an item may carry "resourcePolicy": the resource's own policy, e.g. a role's trust
//     policy for sts:AssumeRole, evaluated with the identity policies as AWS does)
//     -> {"id":2,"results":[{"result":"Allowed"|"ImplicitlyDenied"|"ExplicitlyDenied"|"Error", ...}]}
//
// Each result carries: result (Strict mode: the request context exactly as given, absent keys
// absent), ignoredContextKeys (given keys iam-data does not know at all, or does not list for
// this action/resource, so they were dropped), wildcardOnly (iam-data: the action takes no resource-level
// scope), errors (policy or request validation errors), and unjudged: the conditions whose
// keys the caller could not supply (not in knownKeys) that mattered. Those come from a second
// run in Discovery mode, where keys outside knownKeys count as unknown; discoveryResult says
// what that run concluded (e.g. Strict denies but Discovery allows "if these conditions hold").
// The second run is skipped for roles whose policies have no Condition at all.
import { createInterface } from 'node:readline';
import { isWildcardOnlyAction, runSimulation, typeForContextKey } from '@cloud-copilot/iam-simulate';

const roles = new Map();

function send(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

function flattenIgnored(analysis) {
  const out = [];
  const ignored = analysis?.ignoredConditions ?? {};
  for (const [policyType, byEffect] of Object.entries(ignored)) {
    for (const [effect, conditions] of Object.entries(byEffect ?? {})) {
      for (const c of conditions ?? []) {
        out.push({ policyType, effect: effect === 'deny' ? 'Deny' : 'Allow', op: c.op, key: c.key, values: c.values });
      }
    }
  }
  return out;
}

function firstResult(sim) {
  if (sim.resultType === 'single') return sim.result;
  if (sim.resultType === 'wildcard') return sim.results?.[0];
  return undefined;
}

async function evaluateOne(item) {
  const role = roles.get(item.role);
  if (!role) return { result: 'Error', errors: [`no policies loaded for role ${item.role}`] };
  const [service, action] = String(item.action).split(':');
  let wildcardOnly = null;
  try {
    wildcardOnly = await isWildcardOnlyAction(service, action);
  } catch (e) {
    return { result: 'Error', errors: [`unknown action ${item.action} (iam-data has no such action): ${e.message ?? e}`] };
  }
  // iam-data spells some service tag keys literally (secretsmanager:ResourceTag/tag-key,
  // ssm:resourceTag/tag-key) and the simulator rejects a request naming a key it cannot type:
  // drop those and report them with the ignored keys.
  const contextVariables = {};
  const unknownKeys = [];
  for (const [key, value] of Object.entries(item.context ?? {})) {
    try {
      await typeForContextKey(key);
      contextVariables[key] = value;
    } catch {
      unknownKeys.push(key);
    }
  }
  const simulation = {
    request: {
      principal: item.principal,
      action: item.action,
      resource: { resource: item.resource, accountId: item.accountId },
      contextVariables,
    },
    identityPolicies: role.policies,
    serviceControlPolicies: [],
    resourceControlPolicies: [],
  };
  if (item.resourcePolicy) simulation.resourcePolicy = item.resourcePolicy;
  const strict = await runSimulation(simulation, { simulationMode: 'Strict' });
  if (strict.resultType === 'error') {
    return { result: 'Error', wildcardOnly, errors: [JSON.stringify(strict.errors)] };
  }
  const strictOne = firstResult(strict);
  const base = {
    result: strict.overallResult,
    ignoredContextKeys: [...unknownKeys, ...(strictOne?.ignoredContextKeys ?? [])],
    resourceType: strictOne?.resourceType ?? null,
    wildcardOnly,
    errors: [],
  };
  // Without any condition in the role's policies nothing can hinge on an unknown key.
  const hasConditions = role.hasConditions || JSON.stringify(item.resourcePolicy ?? {}).includes('"Condition"');
  if (!hasConditions) return { ...base, discoveryResult: strict.overallResult, unjudged: [] };
  const constraints = (item.knownKeys ?? []).map((keyName) => ({ keyName, presenceIsKnown: true, valueIsKnown: true }));
  const discovery = await runSimulation(simulation, { simulationMode: 'Discovery', discoveryContextKeyConstraints: constraints });
  const discoveryOne = discovery.resultType === 'error' ? undefined : firstResult(discovery);
  return {
    ...base,
    discoveryResult: discovery.resultType === 'error' ? 'Error' : discovery.overallResult,
    unjudged: flattenIgnored(discoveryOne?.analysis),
  };
}

async function handle(msg) {
  if (msg.op === 'load') {
    for (const [name, role] of Object.entries(msg.roles ?? {})) {
      const policies = role.policies ?? [];
      roles.set(name, { policies, hasConditions: JSON.stringify(policies).includes('"Condition"') });
    }
    return { id: msg.id, ok: true };
  }
  if (msg.op === 'evaluate') {
    const results = [];
    for (const item of msg.items ?? []) {
      try {
        results.push(await evaluateOne(item));
      } catch (e) {
        results.push({ result: 'Error', errors: [String(e?.stack ?? e)] });
      }
    }
    return { id: msg.id, results };
  }
  return { id: msg.id, error: `unknown op ${msg.op}` };
}

const rl = createInterface({ input: process.stdin, crlfDelay: Infinity });
let chain = Promise.resolve();
rl.on('line', (line) => {
  if (!line.trim()) return;
  chain = chain.then(async () => {
    let msg;
    try {
      msg = JSON.parse(line);
    } catch (e) {
      send({ id: null, error: `bad JSON: ${e.message}` });
      return;
    }
    send(await handle(msg));
  });
});
rl.on('close', () => {
  chain.then(() => process.exit(0));
});
