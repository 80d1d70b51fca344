// percept search page. Every value from the server reaches the DOM through
// textContent or an attribute (never as markup); thumbnails are fetched with
// the token and shown as blob: URLs. No inline script (the CSP forbids it).
'use strict';
(function () {
  const $ = (id) => document.getElementById(id);
  // results per page; /#k=N asks for another page size (1..1000)
  const PAGE = Math.min(1000, Math.max(1, parseInt((location.hash.match(/k=(\d+)/) || [])[1], 10) || 24));
  let k = PAGE, last = null, blobs = [];

  const tokenIn = $('token');
  tokenIn.value = sessionStorage.getItem('percept-token') || '';
  tokenIn.addEventListener('change', () => { sessionStorage.setItem('percept-token', tokenIn.value); loadCollections(); });
  function headers(extra) {
    const h = Object.assign({}, extra || {});
    if (tokenIn.value) h['Authorization'] = 'Bearer ' + tokenIn.value;
    return h;
  }
  async function api(path, opts) {
    opts = opts || {};
    const r = await fetch(path, { method: opts.method || 'GET', body: opts.body, headers: headers(opts.headers) });
    const j = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error((j.error || r.status) + ': ' + (j.message || r.statusText));
    return j;
  }
  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = String(text);
    return e;
  }
  function status(node, text, bad) { node.textContent = text; node.classList.toggle('error', !!bad); }

  async function thumb(img, id, segment) {
    const url = '/items/' + encodeURIComponent(id) + '/thumbnail' + (segment >= 0 ? '?segment=' + segment : '');
    try {
      let r = await fetch(url, { headers: headers() });
      if (!r.ok && segment >= 0) r = await fetch('/items/' + encodeURIComponent(id) + '/thumbnail', { headers: headers() });
      if (!r.ok) { img.dataset.missing = '1'; img.dispatchEvent(new Event('thumbdone')); return; }
      const u = URL.createObjectURL(await r.blob());
      blobs.push(u);
      img.src = u;
    } catch (e) { img.dataset.missing = '1'; img.dispatchEvent(new Event('thumbdone')); }
  }
  function fmtTime(s) { return (Math.round(s * 10) / 10).toFixed(1) + ' s'; }

  function card(h) {
    const c = el('div', 'hit');
    c.dataset.id = String(h.id);
    const img = el('img', 'thumb');
    img.alt = h.uri || ('item ' + h.id);
    c.appendChild(img);
    // a segment hit: its index from its start (segments are start/len apart)
    let seg = -1;
    if (h.start_s !== undefined && h.end_s > h.start_s) seg = Math.round(h.start_s / (h.end_s - h.start_s));
    thumb(img, h.id, seg);
    c.appendChild(el('div', 'score', Number(h.score).toFixed(4) + '  #' + h.id));
    if (h.start_s !== undefined) c.appendChild(el('div', 'moment', fmtTime(h.start_s) + ' - ' + fmtTime(h.end_s)));
    c.appendChild(el('div', 'path', h.uri));
    const l = el('div', 'labels');
    (h.labels || []).forEach((x) => l.appendChild(el('span', '', x)));
    c.appendChild(l);
    c.addEventListener('click', () => detail(h.id));
    return c;
  }
  function show(grid, hits) {
    blobs.forEach((u) => URL.revokeObjectURL(u));
    blobs = [];
    grid.replaceChildren(...hits.map(card));
  }

  function filters() {
    const f = { k: k };
    const c = $('collection').value;
    if (c) f.collections = [c];
    const l = $('label').value.trim();
    if (l) f.labels = [l];
    const m = parseFloat($('min').value);
    if (m > 0) f.min_score = m;
    if ($('segments').checked) f.segments = true;
    return f;
  }
  function query(f) {
    const p = new URLSearchParams();
    Object.entries(f).forEach(([key, v]) => (Array.isArray(v) ? v : [v]).forEach((x) => p.append(key, String(x))));
    return p.toString();
  }
  async function run() {
    if (!last) return;
    const st = $('status');
    status(st, 'searching...');
    const f = filters();
    try {
      let r;
      if (last.file) r = await api('/search?' + query(f), { method: 'POST', body: last.file, headers: { 'Content-Type': 'application/octet-stream' } });
      else if (last.id) r = await api('/items/' + encodeURIComponent(last.id) + '/similar?' + query(f));
      else r = await api('/search', { method: 'POST', body: JSON.stringify(Object.assign({ text: last.text }, f)), headers: { 'Content-Type': 'application/json' } });
      show($('results'), r.hits);
      status(st, r.hits.length + ' results' + (last.file ? ' for ' + last.file.name : last.id ? ' like #' + last.id : ''));
      $('more').hidden = r.hits.length < k;
    } catch (e) { status(st, e.message, true); }
  }
  function search(q) { k = PAGE; last = q; run(); }

  $('go').addEventListener('click', () => { const t = $('q').value.trim(); if (t) search({ text: t }); });
  $('q').addEventListener('keydown', (e) => { if (e.key === 'Enter') $('go').click(); });
  $('file').addEventListener('change', (e) => { if (e.target.files[0]) search({ file: e.target.files[0] }); });
  $('more').addEventListener('click', () => { k += PAGE; run(); });
  $('min').addEventListener('input', () => { $('min-out').textContent = Number($('min').value).toFixed(2); });
  ['collection', 'segments'].forEach((id) => $(id).addEventListener('change', run));
  $('min').addEventListener('change', run);
  $('label').addEventListener('change', run);
  function dropZone(zone, onFile) {
    zone.addEventListener('dragover', (e) => { e.preventDefault(); zone.classList.add('dragging'); });
    zone.addEventListener('dragleave', () => zone.classList.remove('dragging'));
    zone.addEventListener('drop', (e) => {
      e.preventDefault();
      zone.classList.remove('dragging');
      if (e.dataTransfer.files[0]) onFile(e.dataTransfer.files[0]);
    });
  }
  dropZone($('query'), (f) => search({ file: f }));

  async function detail(id) {
    const d = $('detail');
    d.hidden = false;
    const dl = $('detail-meta');
    dl.replaceChildren();
    $('detail-img').removeAttribute('src');
    thumb($('detail-img'), id, -1);
    try {
      const it = await api('/items/' + encodeURIComponent(id));
      const add = (k2, v) => { dl.appendChild(el('dt', '', k2)); dl.appendChild(el('dd', '', v)); };
      add('id', it.id); add('collection', it.collection); add('path', it.uri); add('media', it.media);
      add('size', it.width + ' x ' + it.height + ', ' + it.size + ' bytes');
      if (it.media === 'video') add('video', fmtTime(it.duration_s) + ', ' + it.codec + ', ' + it.n_segments + ' segments');
      add('labels', (it.labels || []).join(', '));
      Object.entries(it.meta || {}).forEach(([mk, mv]) => add(mk, mv));
      add('added', new Date(it.created_ms).toISOString());
    } catch (e) { dl.appendChild(el('dd', 'error', e.message)); }
    $('detail-similar').onclick = () => { d.hidden = true; search({ id: id }); };
  }
  $('detail-close').addEventListener('click', () => { $('detail').hidden = true; });

  async function loadCollections() {
    try {
      const r = await api('/collections');
      const s = $('collection');
      const keep = s.value;
      s.replaceChildren(...r.collections.map((c) => { const o = el('option', '', c.name + ' (' + c.n_items + ')'); o.value = c.name; return o; }));
      if (keep) s.value = keep;
    } catch (e) { status($('status'), e.message, true); }
  }

  // moderation tab
  function tab(which) {
    $('search-view').hidden = which !== 'search';
    $('moderate-view').hidden = which !== 'moderate';
    $('tab-search').classList.toggle('on', which === 'search');
    $('tab-moderate').classList.toggle('on', which === 'moderate');
  }
  $('tab-search').addEventListener('click', () => tab('search'));
  $('tab-moderate').addEventListener('click', () => tab('moderate'));
  async function moderate(file) {
    const st = $('mod-status');
    const sets = $('mod-sets').value.split(',').map((s) => s.trim()).filter(Boolean);
    if (!sets.length) { status(st, 'name at least one set', true); return; }
    const p = new URLSearchParams();
    sets.forEach((s) => p.append('sets', s));
    if ($('mod-thr').value) p.append('threshold', $('mod-thr').value);
    status(st, 'checking ' + file.name + '...');
    try {
      const r = await api('/moderate?' + p.toString(), { method: 'POST', body: file, headers: { 'Content-Type': 'application/octet-stream' } });
      status(st, r.matched ? 'matched' : 'clean');
      st.classList.toggle('matched', !!r.matched);
      $('mod-sets-out').replaceChildren(...r.sets.map((s) => el('li', s.matched ? 'matched' : '',
        s.set + ': ' + (s.matched ? 'matched' : 'no match') + ' (threshold ' + Number(s.threshold).toFixed(3) + ')')));
      show($('mod-results'), r.nearest);
    } catch (e) { status(st, e.message, true); }
  }
  $('mod-file').addEventListener('change', (e) => { if (e.target.files[0]) moderate(e.target.files[0]); });
  dropZone($('mod-drop'), moderate);

  loadCollections();
})();
