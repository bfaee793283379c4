// shoal dashboard: one snapshot, then changes, from /api/events.
'use strict';
const $ = (id) => document.getElementById(id);
const S = {nodes: new Map(), services: new Map(), tasks: new Map(), networks: new Map(), secrets: new Map(),
  cluster: null, index: 0, leader: '', self: '', admin: false, events: []};
const dirty = new Set();
let es = null, frame = 0, logES = null;

const esc = (v) => String(v ?? '').replace(/[&<>"']/g, (c) => ({'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;'}[c]));
const low = (e, p) => (e || '').replace(p, '').toLowerCase();
const st = (v) => `<span class="s-${esc(v)}">${esc(v)}</span>`;
const short = (id) => (id || '').slice(0, 12);
const time = (t) => t ? new Date(t).toLocaleTimeString() : '';
const mapOf = {node: 'nodes', service: 'services', task: 'tasks', network: 'networks', secret: 'secrets'};

function connect() {
  if (es) es.close();
  es = new EventSource('/api/events');
  es.addEventListener('snapshot', (m) => {
    const d = JSON.parse(m.data);
    for (const k of ['nodes', 'services', 'tasks', 'networks', 'secrets']) S[k] = new Map((d[k] || []).map((o) => [o.id, o]));
    Object.assign(S, {cluster: d.cluster, index: d.index, leader: d.leader, self: d.self, admin: d.admin});
    $('conn').textContent = 'live'; $('conn').className = 'conn live'; $('login').hidden = true; $('error').hidden = true;
    $('mode').textContent = d.admin ? 'admin' : 'read only';
    ['cluster', 'nodes', 'services', 'networks', 'secrets', 'events'].forEach((s) => dirty.add(s));
    schedule();
  });
  es.addEventListener('change', (m) => {
    const d = JSON.parse(m.data);
    S.index = d.index; S.leader = d.leader; dirty.add('cluster');
    for (const o of d.objects || []) {
      if (o.type === 'cluster') { S.cluster = o.object; continue; }
      const k = mapOf[o.type];
      if (!k) continue;
      if (o.removed) S[k].delete(o.id); else S[k].set(o.id, o.object);
      dirty.add(k === 'tasks' ? 'services' : k);
      if (k === 'nodes') dirty.add('services');
    }
    if (d.events) { S.events = d.events.reverse().concat(S.events).slice(0, 100); dirty.add('events'); }
    schedule();
  });
  es.addEventListener('reset', () => { es.close(); setTimeout(connect, 500); });
  es.onerror = () => {
    $('conn').textContent = 'reconnecting'; $('conn').className = 'conn down';
    if (es.readyState === EventSource.CLOSED) checkAccess();
  };
}

// checkAccess runs when the stream is refused: it asks why.
async function checkAccess() {
  const r = await fetch('/api/state');
  if (r.ok) { setTimeout(connect, 1000); return; }
  const body = await r.json().catch(() => ({}));
  showError(body.error || r.statusText);
  $('login').hidden = r.status !== 401;
}

function showError(msg) { $('error').textContent = msg; $('error').hidden = !msg; }

function schedule() { if (!frame) frame = requestAnimationFrame(render); }

function render() {
  frame = 0;
  for (const s of dirty) ({cluster: renderCluster, nodes: renderNodes, services: renderServices, networks: renderNetworks, secrets: renderSecrets, events: renderEvents})[s]?.();
  dirty.clear();
  // When the first state was on screen: the time to first paint with data.
  if (!performance.getEntriesByName('shoal-rendered').length) performance.mark('shoal-rendered');
}

const byName = (a, b) => name(a).localeCompare(name(b));
const name = (o) => o.spec?.annotations?.name || o.description?.hostname || o.id;
const hostname = (id) => { const n = S.nodes.get(id); return n ? name(n) : short(id); };

function renderCluster() {
  const c = S.cluster || {}, spec = c.spec || {};
  const managers = [...S.nodes.values()].filter((n) => n.role === 'NODE_ROLE_MANAGER');
  const rows = [
    ['Name', spec.annotations?.name], ['ID', c.id],
    ['Leader', S.leader ? hostname(S.leader) : 'none'],
    ['Managers', managers.map((n) => name(n) + (n.id === S.leader ? ' ★' : '')).join(', ')],
    ['Raft index', S.index], ['Heartbeat period', spec.dispatcher?.heartbeat_period],
    ['Task history', spec.orchestration?.task_history_retention], ['Root CA', c.root_ca?.digest],
    ['Served by', hostname(S.self)],
  ];
  $('cluster-info').innerHTML = rows.map(([k, v]) => `<dt>${k}</dt><dd class="mono">${esc(v)}</dd>`).join('');
}

function renderNodes() {
  const nodes = [...S.nodes.values()].sort(byName);
  $('nodes-count').textContent = nodes.length;
  $('nodes').innerHTML = '<tr><th>Host</th><th>ID</th><th>Role</th><th>State</th><th>Availability</th><th>CPUs</th><th>Memory</th><th>Address</th><th>Engine</th><th>Labels</th></tr>' +
    nodes.map((n) => {
      const r = n.description?.resources || {}, avail = low(n.spec?.availability, 'NODE_AVAILABILITY_');
      const labels = Object.entries(n.spec?.annotations?.labels || {}).map(([k, v]) => `${k}=${v}`).join(' ');
      const act = S.admin ? ` <select data-node="${esc(n.id)}">${['active', 'pause', 'drain'].map((a) => `<option${a === avail ? ' selected' : ''}>${a}</option>`).join('')}</select>` : '';
      return `<tr class="node" data-id="${esc(n.id)}" data-state="${esc(low(n.status?.state, 'NODE_STATE_'))}"><td>${esc(name(n))}</td><td class="mono">${esc(short(n.id))}</td>` +
        `<td>${esc(low(n.role, 'NODE_ROLE_'))}${n.id === S.leader ? ' (leader)' : ''}</td><td>${st(low(n.status?.state, 'NODE_STATE_'))}</td>` +
        `<td>${st(avail)}${act}</td><td>${r.nano_cpus ? (r.nano_cpus / 1e9).toFixed(1) : ''}</td>` +
        `<td>${r.memory_bytes ? (r.memory_bytes / 2 ** 30).toFixed(1) + ' GiB' : ''}</td><td class="mono">${esc(n.status?.addr)}</td>` +
        `<td>${esc(n.description?.engine_version)}</td><td class="wrap mono">${esc(labels)}</td></tr>`;
    }).join('');
}

function mode(s) {
  const m = s.spec || {};
  if (m.replicated) return ['replicated', Number(m.replicated.replicas || 0)];
  if (m.replicated_job) return ['replicated-job', Number(m.replicated_job.total_completions || 0)];
  if (m.global_job) return ['global-job', null];
  return ['global', null];
}

const open = new Set();

function renderServices() {
  const tasksOf = new Map();
  for (const t of S.tasks.values()) {
    if (!tasksOf.has(t.service_id)) tasksOf.set(t.service_id, []);
    tasksOf.get(t.service_id).push(t);
  }
  const services = [...S.services.values()].sort(byName);
  $('services-count').textContent = services.length;
  // An input being typed in survives the re-render.
  const f = document.activeElement, keep = f?.id && $('services').contains(f) ? [f.id, f.value] : null;
  $('services').innerHTML = services.map((s) => {
    const tasks = (tasksOf.get(s.id) || []).sort((a, b) => Number(a.slot || 0) - Number(b.slot || 0) || (b.meta?.updated_at || '').localeCompare(a.meta?.updated_at || ''));
    const live = tasks.filter((t) => t.desired_state === 'TASK_STATE_RUNNING');
    const running = live.filter((t) => t.status?.state === 'TASK_STATE_RUNNING').length;
    const [m, want] = mode(s);
    const ports = (s.spec?.endpoint?.ports || []).map((p) => `${p.published_port || ''}:${p.target_port}/${p.protocol || 'tcp'}`).join(' ');
    const u = s.update_status;
    const upd = u ? low(u.state, 'UPDATE_STATE_') + (u.message ? ': ' + u.message : '') : '';
    const n = name(s);
    return `<details data-id="${esc(s.id)}" data-name="${esc(n)}"${open.has(s.id) ? ' open' : ''}><summary>` +
      `<b>${esc(n)}</b><span>${m}</span><span class="replicas">${running}/${want ?? live.length}</span>` +
      `<span class="mono">${esc(s.spec?.task?.container?.image)}</span><span class="mono">${esc(ports)}</span><span>${st(upd)}</span></summary>` +
      `<div class="act"><button data-logs="${esc(n)}">logs</button>${S.admin ? adminActions(s, want) : ''}</div>` +
      '<table><tr><th>Task</th><th>ID</th><th>State</th><th>Desired</th><th>Node</th><th>Address</th><th>Health</th><th>Exit</th><th>Error</th><th>Since</th></tr>' +
      tasks.map((t) => {
        const state = low(t.status?.state, 'TASK_STATE_'), desired = low(t.desired_state, 'TASK_STATE_');
        const addr = (t.networks || []).map((a) => a.addr).join(' ');
        return `<tr class="task" data-id="${esc(t.id)}" data-service="${esc(n)}" data-state="${esc(state)}" data-desired="${esc(desired)}">` +
          `<td>${esc(n)}.${esc(t.slot || short(t.node_id))}</td><td class="mono">${esc(short(t.id))}</td><td>${st(state)}</td><td>${esc(desired)}</td>` +
          `<td>${esc(t.node_id ? hostname(t.node_id) : '')}</td><td class="mono">${esc(addr)}</td><td>${st(low(t.status?.health, 'TASK_HEALTH_'))}</td>` +
          `<td>${t.status?.exit_code ?? ''}</td><td class="wrap err">${esc(t.status?.err)}</td><td>${time(t.status?.timestamp)}</td></tr>`;
      }).join('') + '</table></details>';
  }).join('');
  if (keep && $(keep[0])) { $(keep[0]).value = keep[1]; $(keep[0]).focus(); }
}

function adminActions(s, want) {
  const id = esc(s.id);
  return (s.spec?.replicated ? `<input type="number" min="0" id="scale-${id}" value="${want}"><button data-scale="${id}">scale</button>` : '') +
    `<input id="image-${id}" value="${esc(s.spec?.task?.container?.image)}" size="30"><button data-image="${id}">update image</button>`;
}

function renderNetworks() {
  $('networks').innerHTML = '<tr><th>Name</th><th>ID</th><th>Subnet</th><th>Created</th></tr>' + [...S.networks.values()].sort(byName).map((n) =>
    `<tr><td>${esc(name(n))}</td><td class="mono">${esc(short(n.id))}</td><td class="mono">${esc(n.subnet)}</td><td>${esc(n.meta?.created_at)}</td></tr>`).join('');
}

function renderSecrets() {
  $('secrets').innerHTML = '<tr><th>Name</th><th>ID</th><th>Size</th><th>Created</th></tr>' + [...S.secrets.values()].sort(byName).map((s) =>
    `<tr><td>${esc(name(s))}</td><td class="mono">${esc(short(s.id))}</td><td>${esc(s.size)} B</td><td>${esc(s.meta?.created_at)}</td></tr>`).join('');
}

function renderEvents() {
  $('events').innerHTML = S.events.map((e) => `<li>${time(e.time)} ${esc(e.type)} ${st(e.action)} ${esc(e.name || e.id)}</li>`).join('');
}

function follow(service) {
  if (logES) logES.close();
  $('logs-panel').hidden = false; $('logs-service').textContent = service; $('logs').textContent = '';
  const names = {};
  logES = new EventSource('/api/services/' + encodeURIComponent(service) + '/logs');
  logES.addEventListener('logs', (m) => {
    const d = JSON.parse(m.data), pre = $('logs');
    Object.assign(names, d.tasks || {});
    const stick = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    const text = (d.lines || []).map((l) => `${names[l.task] || short(l.task)} | ${l.text}\n`).join('') + (d.errors || []).map((e) => `error: ${e}\n`).join('');
    pre.append(text);
    if (stick) pre.scrollTop = pre.scrollHeight;
  });
  logES.addEventListener('end', () => logES.close());
  logES.onerror = () => { if (logES.readyState === EventSource.CLOSED) $('logs').append('(the stream ended)\n'); };
}

async function post(path, body) {
  const r = await fetch(path, {method: 'POST', headers: {'Content-Type': 'application/json'}, body: JSON.stringify(body)});
  const d = await r.json().catch(() => ({}));
  showError(r.ok ? '' : d.error || r.statusText);
}

document.addEventListener('click', (e) => {
  const b = e.target.closest('button');
  if (!b) return;
  const d = b.dataset;
  if (d.logs) follow(d.logs);
  else if (d.scale) post(`/api/services/${d.scale}/scale`, {replicas: Number($('scale-' + d.scale).value)});
  else if (d.image) post(`/api/services/${d.image}/image`, {image: $('image-' + d.image).value});
  else if (b.id === 'logs-close') { if (logES) logES.close(); $('logs-panel').hidden = true; }
});
document.addEventListener('change', (e) => {
  if (e.target.dataset.node) post(`/api/nodes/${e.target.dataset.node}/availability`, {availability: e.target.value});
});
document.addEventListener('toggle', (e) => {
  const id = e.target.dataset?.id;
  if (id) e.target.open ? open.add(id) : open.delete(id);
}, true);
$('login').addEventListener('submit', async (e) => {
  e.preventDefault();
  const r = await fetch('/api/login', {method: 'POST', headers: {'Content-Type': 'application/json'}, body: JSON.stringify({token: $('token').value})});
  if (r.ok) { $('token').value = ''; connect(); } else showError((await r.json().catch(() => ({}))).error || r.statusText);
});
connect();
