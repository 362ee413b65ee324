// The Gemini CLI extension's calls (clients.md §1.3) made the way it makes
// them, with Node's own fetch: create_sandbox (then its status polled
// until ready), send_prompt_to_sandbox (exec), list_sandboxes,
// pause_sandbox, get_sandbox_status until paused, resume_sandbox (status
// until ready), exec, delete_sandbox.  The extension polls every 5 s; here
// every POLL_MS, the same calls.  Each connection fetch opens is watched:
// none may be closed or reset before the session is over.  Prints what it
// saw as one JSON line.
//
//   node extension-session.cjs PROXY_URL API_KEY NAME [POLL_MS]

const dc = require('node:diagnostics_channel');

const [proxyUrl, apiKey, name, pollMs = '250'] = process.argv.slice(2);
const sockets = [];
let over = false;
dc.subscribe('undici:client:connected', ({ socket }) => {
    const s = { port: socket.localPort, closed: false, error: null };
    sockets.push(s);
    socket.on('error', (e) => { s.error = e.code || String(e); });
    socket.on('close', () => { if (!over) s.closed = true; });
});

const calls = [];
async function call(tool, method, path, body) {
    const headers = { Authorization: `Bearer ${apiKey}` };
    const init = { method, headers };
    if (body !== undefined) {
        headers['Content-Type'] = 'application/json';
        init.body = JSON.stringify(body);
    }
    const res = await fetch(`${proxyUrl}${path}`, init);
    const json = await res.json();      // every answer must be JSON
    calls.push({ tool, method, path, status: res.status });
    return { status: res.status, json };
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function poll(cond) {
    for (let i = 0; i < 60000 / pollMs; i++) {
        const r = await call('get_sandbox_status', 'GET', `/api/sandboxes/${name}`);
        if (r.status === 200 && cond(r.json)) return r.json;
        await sleep(Number(pollMs));
    }
    throw new Error(`status never came: ${name}`);
}

async function main() {
    const out = {};
    let r = await call('create_sandbox', 'POST', '/api/sandboxes',
                       { name, image: 'ghcr.io/agent-infra/sandbox:latest',
                         port: 8888 });
    out.created = r.status;
    out.ready = (await poll((j) => j.ready === true)).ready;
    const exec = (command) => call('send_prompt_to_sandbox', 'POST',
                                   `/proxy/${name}/v1/shell/exec`, { command });
    r = await exec('echo first');
    out.exec1 = r.json.data && r.json.data.output;
    out.listed = (await call('list_sandboxes', 'GET', '/api/sandboxes')).json.count;
    out.paused = (await call('pause_sandbox', 'POST',
                             `/api/sandboxes/${name}/pause`)).json.replicas;
    // paused once the controller says so too (see t/14)
    out.pausedState = (await poll((j) => j.state === 'paused'
                                  && j.readyReason === 'SandboxSuspended')).state;
    out.resumed = (await call('resume_sandbox', 'POST',
                              `/api/sandboxes/${name}/resume`)).json.replicas;
    out.readyAgain = (await poll((j) => j.ready === true)).ready;
    r = await exec('echo second');
    out.exec2 = r.json.data && r.json.data.output;
    out.exec2Answer = r;
    out.deleted = (await call('delete_sandbox', 'DELETE',
                              `/api/sandboxes/${name}`)).status;
    out.calls = calls;
    out.sockets = sockets;
    over = true;
    console.log(JSON.stringify(out));
}

main().catch((e) => {
    console.error(`extension-session: ${e && e.stack || e}`);
    console.error(JSON.stringify({ calls, sockets }));
    process.exit(1);
});
