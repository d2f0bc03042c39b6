// godwit's web console (docs/console.md): polls the managers' JSON API and shows it.
// Every name and message comes from the cluster and is shown with textContent only:
// nothing from the API is ever parsed as HTML.
'use strict';

(() => {
  const POLL_MS = 1000;
  const EVENTS_SHOWN = 60;
  const ENDED_SHOWN = 8;

  const $ = (id) => document.getElementById(id);

  // An element with text children only; attributes are set as values, never parsed.
  function el(tag, props, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (k === 'class') e.className = v;
      else if (k === 'data') Object.assign(e.dataset, v);
      else if (k === 'onclick') e.addEventListener('click', v);
      else e.setAttribute(k, v);
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  function setText(e, text) {
    const t = String(text);
    if (e.textContent !== t) e.textContent = t;
  }

  // ---- formats ----

  function bytes(n) {
    if (!n) return '0';
    if (n >= 2 ** 30) return `${(n / 2 ** 30).toFixed(1)} GiB`;
    if (n >= 2 ** 20) return `${Math.round(n / 2 ** 20)} MiB`;
    return `${Math.round(n / 1024)} KiB`;
  }

  function duration(ms) {
    if (ms < 10000) return `${(ms / 1000).toFixed(1)}s`;
    const s = Math.floor(ms / 1000);
    if (s < 60) return `${s}s`;
    if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
    if (s < 86400) return `${Math.floor(s / 3600)}h${String(Math.floor(s / 60) % 60).padStart(2, '0')}m`;
    return `${Math.floor(s / 86400)}d${Math.floor(s / 3600) % 24}h`;
  }

  function clock(ms) {
    return new Date(ms).toLocaleTimeString([], { hour12: false });
  }

  // ---- the API ----

  class AuthError extends Error {}

  async function api(method, path, body) {
    const opts = {
      method,
      headers: { 'X-Godwit-Console': '1' },
      credentials: 'same-origin',
      cache: 'no-store',
    };
    if (body !== undefined) {
      opts.headers['Content-Type'] = 'application/json';
      opts.body = JSON.stringify(body);
    }
    const r = await fetch(path, opts);
    const text = await r.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch (e) {
      data = null;
    }
    if (r.status === 401) throw new AuthError((data && data.error) || 'not logged in');
    if (!r.ok) throw new Error((data && data.error) || `${method} ${path}: HTTP ${r.status}`);
    return data;
  }

  function notice(text) {
    const n = $('notice');
    setText(n, text || '');
    n.hidden = !text;
  }

  // ---- views ----

  let polling = null;

  function showLogin(why) {
    stopPolling();
    $('dash').hidden = true;
    $('logout').hidden = true;
    $('login-view').hidden = false;
    setText($('login-error'), why || '');
    setText($('status'), '');
    $('token').focus();
  }

  function showDash() {
    $('login-view').hidden = true;
    $('dash').hidden = false;
    $('logout').hidden = false;
    startPolling();
  }

  function stopPolling() {
    if (polling) clearTimeout(polling);
    polling = null;
  }

  function startPolling() {
    stopPolling();
    poll();
  }

  // Usage in % from two readings of a cumulative CPU-time counter.
  const cpuSeen = new Map();
  function cpuPct(key, ns, cpus) {
    const now = performance.now();
    const prev = cpuSeen.get(key);
    cpuSeen.set(key, { ns, now });
    if (!prev || ns < prev.ns || now <= prev.now || !cpus) return null;
    return Math.min(100, ((ns - prev.ns) / 1e6 / (now - prev.now) / cpus) * 100);
  }

  let current = { hosts: [], vms: [] };
  let inflight = false;
  let again = false;

  // One poll at a time; one asked for meanwhile (after an action) follows at once.
  async function poll() {
    if (inflight) {
      again = true;
      return;
    }
    inflight = true;
    stopPolling();
    try {
      const [hosts, vms, tasks, events, drs] = await Promise.all([
        api('GET', '/hosts'), api('GET', '/vms'), api('GET', '/tasks'), api('GET', '/events'),
        api('GET', '/drs/recommendations'),
      ]);
      current = { hosts: hosts.hosts, vms: vms.vms };
      renderHosts(hosts.hosts, vms.vms, tasks.tasks);
      renderMoves(tasks);
      renderDrs(drs);
      renderVms(vms.vms);
      renderEvents(events.events);
      setText($('leader'), hosts.leader ? `leader ${hosts.leader}` : 'no leader');
      $('status').className = 'status live';
      setText($('status'), `live · ${clock(Date.now())}`);
    } catch (e) {
      if (e instanceof AuthError) showLogin('Your session has ended: log in again.');
      else {
        $('status').className = 'status lost';
        setText($('status'), `no answer: ${e.message} (trying again)`);
      }
    }
    inflight = false;
    if ($('dash').hidden) return;
    if (again) {
      again = false;
      poll();
    } else polling = setTimeout(poll, POLL_MS);
  }

  // Keeps one element per key in container, in the list's order; make(key) creates,
  // update(elem, item) refreshes. Elements stay across polls (bars move, not blink).
  function reconcile(container, items, keyOf, make, update) {
    const old = new Map();
    for (const c of Array.from(container.children)) old.set(c.dataset.key, c);
    let prev = null;
    for (const item of items) {
      const key = keyOf(item);
      let e = old.get(key);
      if (e) old.delete(key);
      else {
        e = make(item);
        e.dataset.key = key;
      }
      update(e, item);
      const want = prev ? prev.nextSibling : container.firstChild;
      if (want !== e) container.insertBefore(e, want);
      prev = e;
    }
    for (const e of old.values()) e.remove();
  }

  function bar(kind) {
    return el('div', { class: `bar ${kind}`, role: 'progressbar', 'aria-valuemin': '0',
      'aria-valuemax': '100', 'aria-valuenow': '0' }, el('div', { class: 'fill' }));
  }

  function setBar(b, pct) {
    const v = Math.max(0, Math.min(100, pct || 0));
    b.setAttribute('aria-valuenow', String(Math.round(v)));
    b.firstChild.style.width = `${v}%`;
  }

  // ---- hosts ----

  function hostClass(state) {
    if (state === 'up') return 'up';
    if (state === 'down') return 'down';
    return 'maint';
  }

  function makeHost(h) {
    const e = el('article', { class: 'host', data: { host: h.name } });
    const maint = el('button', { type: 'button', class: 'maint-button' });
    maint.addEventListener('click', () => maintenance(e.dataset.host, maint.dataset.action));
    e.append(
      el('div', { class: 'host-head' }, el('span', { class: 'host-name' }), el('span', { class: 'badge' })),
      el('div', { class: 'meter' }, 'CPU', bar('cpu')),
      el('div', { class: 'meter' }, el('span', { class: 'meter-note cpu-note' })),
      el('div', { class: 'meter' }, 'Memory', bar('mem')),
      el('div', { class: 'meter' }, el('span', { class: 'meter-note mem-note' })),
      el('div', { class: 'chips' }),
      el('ul', { class: 'stuck' }),
      el('div', { class: 'host-actions' }, maint),
    );
    return e;
  }

  function renderHosts(hosts, vms, tasks) {
    const moving = new Set(tasks.filter((t) => t.phase !== 'queued').map((t) => t.vm));
    reconcile($('hosts'), hosts, (h) => h.name, makeHost, (e, h) => {
      const cls = hostClass(h.state);
      e.className = `host ${cls}`;
      setText(e.querySelector('.host-name'), h.name);
      const badge = e.querySelector('.badge');
      badge.className = `badge ${cls}`;
      setText(badge, h.state);
      const b = e.querySelector('.maint-button');
      const inMaint = h.state.includes('maintenance');
      b.dataset.action = inMaint ? 'exit' : 'enter';
      setText(b, inMaint ? 'Exit maintenance' : 'Enter maintenance');
      const cpu = cpuPct(`h/${h.name}`, h.vcpu_time_ns || 0, h.cpus);
      const cpuBar = e.querySelector('.bar.cpu');
      setBar(cpuBar, cpu);
      cpuBar.classList.toggle('hot', cpu !== null && cpu > 85);
      setText(e.querySelector('.cpu-note'),
        `${cpu === null ? '…' : `${Math.round(cpu)}%`} busy · ${h.cpus_used} of ${h.cpus} vCPUs given`);
      setBar(e.querySelector('.bar.mem'), h.memory ? (h.mem_used / h.memory) * 100 : 0);
      setText(e.querySelector('.mem-note'),
        `${bytes(h.mem_used)} of ${bytes(h.memory)} given · ${bytes(h.rss)} resident`);
      const mine = vms.filter((v) => v.host === h.name).map((v) => v.name).sort();
      reconcile(e.querySelector('.chips'), mine, (n) => n,
        (n) => el('span', { class: 'chip', data: { vm: n } }, n),
        (c, n) => c.classList.toggle('moving', moving.has(n)));
      const stuck = Object.entries(h.stuck || {});
      reconcile(e.querySelector('.stuck'), stuck, ([vm]) => vm, () => el('li'),
        (li, [vm, why]) => setText(li, `${vm} cannot leave: ${why}`));
    });
  }

  // ---- moves ----

  function taskPct(t) {
    const p = t.progress;
    if (!p || !p.ram_bytes) return 0;
    // Guest RAM sent plus the holes never touched (not sent), over the guest's RAM;
    // later rounds send pages again: the bar waits at 99% for the hand-over.
    return Math.min(99, ((p.ram_moved_bytes + (p.skipped_bytes || 0)) / p.ram_bytes) * 100);
  }

  // Guest RAM moved per second between the leader's last two readings of a move; the
  // source's own figure changes only once per round (none during the first pass).
  const movedSeen = new Map();
  function moveRate(t) {
    const p = t.progress;
    const prev = movedSeen.get(t.id);
    if (!prev || prev.at !== t.progress_ms) {
      const last = prev ? { at: prev.at, moved: prev.moved } : null;
      movedSeen.set(t.id, { at: t.progress_ms, moved: p.ram_moved_bytes, last });
    }
    const cur = movedSeen.get(t.id);
    const before = cur.last;
    if (before && cur.at > before.at && cur.moved >= before.moved) {
      return ((cur.moved - before.moved) / (cur.at - before.at)) * 1000;
    }
    return p.bandwidth || 0;
  }

  function makeMove(t) {
    const cancel = el('button', { type: 'button', class: 'quiet cancel-button' }, 'Cancel');
    cancel.addEventListener('click', () => cancelTask(t.id, cancel));
    return el('tr', { data: { task: t.id } },
      el('td', { class: 'vm' }), el('td', { class: 'route' }), el('td', { class: 'why' }),
      el('td', { class: 'phase' }),
      el('td', { class: 'progress' }, bar('move'), el('span', { class: 'pct' })),
      el('td', { class: 'num rate' }), el('td', { class: 'num left' }),
      el('td', { class: 'num pause' }), el('td', { class: 'num try' }), el('td', {}, cancel));
  }

  function updateMove(tr, t) {
    const p = t.progress || {};
    const live = t.phase === 'migrating' && t.progress;
    setText(tr.querySelector('.vm'), t.vm);
    setText(tr.querySelector('.route'), `${t.src} → ${t.dst || '(scheduler)'}`);
    setText(tr.querySelector('.why'), t.kind === 'restart' ? `restart (${t.reason})` : t.reason);
    setText(tr.querySelector('.phase'), t.cancel_asked ? `${t.phase}, cancelling` : t.phase);
    const b = tr.querySelector('.bar');
    b.classList.toggle('queued', t.phase === 'queued');
    const pct = t.kind === 'restart' ? 0 : taskPct(t);
    setBar(b, pct);
    setText(tr.querySelector('.pct'), live ? `${Math.floor(pct)}% · round ${p.rounds || 0}` : '');
    const rate = live ? moveRate(t) : 0;
    setText(tr.querySelector('.rate'), rate ? (rate / 1e6).toFixed(1) : '');
    setText(tr.querySelector('.left'), live && p.remaining_bytes ? bytes(p.remaining_bytes) : '');
    setText(tr.querySelector('.pause'),
      live && p.predicted_pause_ms !== undefined ? `${p.predicted_pause_ms} ms` : '');
    setText(tr.querySelector('.try'), t.attempt ? String(t.attempt) : '');
    tr.querySelector('.cancel-button').disabled = !!t.cancel_asked;
    tr.title = t.error ? `last try: ${t.error}` : '';
  }

  function renderMoves(tasks) {
    const list = tasks.tasks || [];
    reconcile($('moves').tBodies[0], list, (t) => t.id, makeMove, updateMove);
    for (const id of movedSeen.keys()) if (!list.some((t) => t.id === id)) movedSeen.delete(id);
    $('moves').hidden = list.length === 0;
    $('no-moves').hidden = list.length > 0;
    const l = tasks.limits || {};
    setText($('limits'), `${tasks.in_flight || 0} in flight · at most ${l.per_host} per host, ${l.cluster} in the cluster`);
    const ended = (tasks.history || []).slice(-ENDED_SHOWN).reverse();
    reconcile($('ended').tBodies[0], ended, (t) => t.id,
      () => el('tr', {}, el('td'), el('td'), el('td'), el('td'), el('td', { class: 'num' }),
        el('td', { class: 'num' }), el('td')),
      (tr, t) => {
        const c = tr.children;
        setText(c[0], t.vm);
        setText(c[1], `${t.src} → ${t.dst || '—'}`);
        setText(c[2], t.kind === 'restart' ? `restart (${t.reason})` : t.reason);
        setText(c[3], t.phase);
        c[3].className = `result-${t.phase}`;
        setText(c[4], t.started_ms && t.ended_ms ? duration(t.ended_ms - t.started_ms) : '');
        setText(c[5], t.ended_ms ? clock(t.ended_ms) : '');
        setText(c[6], t.error || '');
      });
    $('ended').hidden = ended.length === 0;
    $('ended-title').hidden = ended.length === 0;
  }

  // ---- balancing (DRS) ----

  function makeRecommendation(r) {
    const apply = el('button', { type: 'button', class: 'quiet apply-button' }, 'Apply');
    const tr = el('tr', { data: { id: r.id } },
      el('td', { class: 'id' }), el('td', { class: 'vm' }), el('td', { class: 'route' }),
      el('td', { class: 'why' }), el('td', { class: 'num gain' }), el('td', { class: 'num copy' }),
      el('td', {}, apply));
    apply.addEventListener('click', () => applyDrs(tr.dataset.id, apply));
    return tr;
  }

  function renderDrs(d) {
    const list = d.recommendations || [];
    reconcile($('drs').tBodies[0], list, (r) => r.id, makeRecommendation, (tr, r) => {
      setText(tr.querySelector('.id'), r.id);
      setText(tr.querySelector('.vm'), r.vm);
      setText(tr.querySelector('.route'), `${r.src} → ${r.dst}`);
      setText(tr.querySelector('.why'), r.reason);
      setText(tr.querySelector('.gain'), Number(r.gain || 0).toFixed(3));
      setText(tr.querySelector('.copy'), bytes(r.bytes));
      tr.title = r.why || '';
    });
    $('drs').hidden = list.length === 0;
    $('no-drs').hidden = list.length > 0;
    $('drs-apply-all').hidden = list.length < 2;
    $('drs-apply-all').disabled = false;
    setText($('drs-summary'), d.pass
      ? `${d.automation} · imbalance ${Number(d.imbalance).toFixed(3)}` +
        (d.tolerance >= 0 ? ` (tolerated ${Number(d.tolerance).toFixed(3)})` : '')
      : 'no pass yet');
  }

  function applyDrs(id, button) {
    button.disabled = true;
    act(`apply recommendation ${id}`, () => api('POST', '/drs/apply', { id }));
  }

  $('drs-apply-all').addEventListener('click', () => applyDrs('all', $('drs-apply-all')));

  // ---- VMs ----

  function makeVm(v) {
    const go = el('button', { type: 'button', class: 'quiet migrate-button' }, 'Migrate…');
    const tr = el('tr', { data: { vm: v.name } },
      el('td', { class: 'name' }), el('td', { class: 'vm-host' }), el('td', { class: 'state' }),
      el('td', { class: 'num mem' }), el('td', { class: 'num cpus' }), el('td', { class: 'num cpu' }),
      el('td', { class: 'num up' }), el('td', { class: 'task' }), el('td', {}, go));
    go.addEventListener('click', () => openMigrate(tr.dataset.vm));
    return tr;
  }

  function renderVms(vms) {
    const sorted = vms.slice().sort((a, b) => a.name.localeCompare(b.name));
    reconcile($('vms').tBodies[0], sorted, (v) => v.name, makeVm, (tr, v) => {
      setText(tr.querySelector('.name'), v.name);
      setText(tr.querySelector('.vm-host'), v.host);
      setText(tr.querySelector('.state'), v.state);
      setText(tr.querySelector('.mem'), bytes(v.memory));
      setText(tr.querySelector('.cpus'), String(v.cpus));
      const cpu = cpuPct(`v/${v.name}`, v.vcpu_time_ns || 0, v.cpus);
      setText(tr.querySelector('.cpu'), cpu === null ? '' : `${Math.round(cpu)}%`);
      setText(tr.querySelector('.up'), v.uptime_ms ? duration(v.uptime_ms) : '');
      setText(tr.querySelector('.task'), v.task || '');
      tr.querySelector('.migrate-button').disabled = !!v.task || v.state !== 'running';
    });
  }

  // ---- events ----

  // Events have no id (two may share a time and a text): the list is rebuilt when it changed.
  let eventsSeen = '';
  function renderEvents(events) {
    const shown = events.slice(-EVENTS_SHOWN).reverse();
    const sig = JSON.stringify(shown);
    if (sig === eventsSeen) return;
    eventsSeen = sig;
    $('events').replaceChildren(...shown.map((e) =>
      el('li', {}, el('time', {}, clock(e.time_ms)), el('span', {}, e.message))));
  }

  // ---- actions ----

  async function act(what, fn) {
    notice('');
    try {
      await fn();
      pollSoon();
    } catch (e) {
      if (e instanceof AuthError) showLogin('Your session has ended: log in again.');
      else notice(`${what}: ${e.message}`);
    }
  }

  function pollSoon() {
    if (!$('dash').hidden) poll();
  }

  function confirmDialog(text) {
    return new Promise((resolve) => {
      const d = $('confirm-dialog');
      setText($('confirm-text'), text);
      d.returnValue = '';
      d.addEventListener('close', () => resolve(d.returnValue === 'go'), { once: true });
      d.showModal();
    });
  }

  async function maintenance(host, action) {
    if (action === 'enter') {
      const n = current.vms.filter((v) => v.host === host).length;
      const ok = await confirmDialog(`Put ${host} into maintenance? Its ${n} VM(s) move to other hosts while they run; nothing new goes there.`);
      if (!ok) return;
    }
    act(`${action} maintenance of ${host}`,
      () => api('POST', `/hosts/${encodeURIComponent(host)}/maintenance`, { action }));
  }

  function cancelTask(id, button) {
    button.disabled = true;
    act(`cancel ${id}`, () => api('POST', `/tasks/${encodeURIComponent(id)}/cancel`));
  }

  function openMigrate(name) {
    const v = current.vms.find((x) => x.name === name);
    if (!v) return;
    setText($('migrate-vm'), name);
    const sel = $('migrate-to');
    sel.replaceChildren(el('option', { value: '' }, 'where the scheduler chooses'));
    for (const h of current.hosts) {
      if (h.name === v.host || h.state !== 'up') continue;
      const free = h.memory - h.mem_used;
      const o = el('option', {}, `${h.name} (${bytes(free)} free)`);
      o.value = h.name;
      o.disabled = free < v.memory;
      sel.append(o);
    }
    $('migrate-bw').value = '';
    const d = $('migrate-dialog');
    d.returnValue = '';
    d.dataset.vm = name;
    d.showModal();
  }

  $('migrate-dialog').addEventListener('close', () => {
    const d = $('migrate-dialog');
    if (d.returnValue !== 'go') return;
    const body = { to: $('migrate-to').value };
    const mbps = Number($('migrate-bw').value);
    if (mbps > 0) body.max_bandwidth = Math.round(mbps * 1e6);
    act(`migrate ${d.dataset.vm}`,
      () => api('POST', `/vms/${encodeURIComponent(d.dataset.vm)}/migrate`, body));
  });

  // ---- login ----

  $('login-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    setText($('login-error'), '');
    try {
      await api('POST', '/console/login', { token: $('token').value.trim() });
      $('token').value = '';
      showDash();
    } catch (e) {
      setText($('login-error'), e.message);
    }
  });

  $('logout').addEventListener('click', async () => {
    try {
      await api('POST', '/console/logout');
    } catch (e) {
      // Logged out either way: the cookie is gone or was never good.
    }
    showLogin('');
  });

  async function start() {
    try {
      const s = await api('GET', '/console/session');
      if (s && s.auth) showDash();
      else showLogin('');
    } catch (e) {
      showLogin(e.message);
    }
  }

  start();
})();
