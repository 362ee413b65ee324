// An MCP session as Gemini CLI makes it, with the real TypeScript SDK
// (@modelcontextprotocol/sdk, installed by t/clients/mcp-sdk.sh): connect
// (initialize, notifications/initialized, the GET stream), tools/list, a
// tools/call with progress, then the session ended with DELETE.  Prints
// what it saw as one JSON line; any transport error fails the process.
// Node's fetch opens a connection per request in flight (the SDK's GET
// stream runs beside the next POST), so each connection it opens is
// watched: none may be closed or reset before the session is over.
//
//   NODE_PATH=<sdk dir>/node_modules node mcp-session.cjs URL KEY COMMAND

const { Client } = require('@modelcontextprotocol/sdk/client/index.js');
const { StreamableHTTPClientTransport } =
    require('@modelcontextprotocol/sdk/client/streamableHttp.js');

const dc = require('node:diagnostics_channel');
const sockets = [];
let over = false;
dc.subscribe('undici:client:connected', ({ socket }) => {
    const s = { port: socket.localPort, closed: false, error: null };
    sockets.push(s);
    socket.on('error', (e) => { s.error = e.code || String(e); });
    socket.on('close', () => { if (!over) s.closed = true; });
});

async function main() {
    const [url, key, command] = process.argv.slice(2);
    const out = { progress: [] };
    const transport = new StreamableHTTPClientTransport(new URL(url), {
        requestInit: { headers: { Authorization: `Bearer ${key}` } },
    });
    const client = new Client({ name: 'gemini-cli-mcp-client',
                                version: '0.56.0' });
    await client.connect(transport);
    out.sessionId = transport.sessionId;
    out.protocolVersion = transport.protocolVersion;
    out.server = client.getServerVersion();
    out.tools = (await client.listTools()).tools.map((t) => t.name);

    const t0 = Date.now();
    out.result = await client.callTool(
        { name: 'run', arguments: { command } }, undefined,
        { onprogress: (p) => out.progress.push({ at: Date.now() - t0,
                                                 progress: p.progress,
                                                 message: p.message }) });
    out.resultAt = Date.now() - t0;
    await transport.terminateSession();
    out.terminated = transport.sessionId === undefined;
    out.sockets = sockets;
    over = true;
    await client.close();
    console.log(JSON.stringify(out));
}

main().catch((e) => {
    console.error(`mcp-session: ${e && e.stack || e}`);
    process.exit(1);
});
