/**
 * demo-page: the HTML of the demo's index page, one self-contained document (inline CSS and
 * script, no framework, no build step). It shows the three ways a server talks to a browser
 * without the browser asking each time: a clock over server-sent events, an echo over a
 * WebSocket, and a chat room over long polling; and it links the other examples.
 *
 * Element ids the browser test relies on: `sse-state`, `clock`, `clock-count`; `ws-state`,
 * `ws-form`, `ws-input`, `ws-log`; `chat-form`, `chat-name`, `chat-text`, `chat-log`.
 */

/** demoPage renders the page for the demo mounted at `base` (its SCRIPT_NAME, `""` at the root). */
export function demoPage(base: string): string {
  const at = escapeHtml(base);
  // The base goes into the script as a JSON string; `<` is escaped so it cannot close the tag.
  const baseJs = JSON.stringify(base).replace(/</g, '\\u003c');
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>nsgi demo</title>
<style>
body { font: 16px/1.5 system-ui, sans-serif; max-width: 46rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
h1 { margin-bottom: 0; } h2 { font-size: 1.15rem; margin: 1.8rem 0 .4rem; }
code { background: #f2f2f2; padding: 0 .2em; } li { margin: .3em 0; }
section { border: 1px solid #ddd; border-radius: 6px; padding: .2rem 1rem 1rem; margin: 1rem 0; }
.state { font-size: .85rem; color: #666; } .state.ok { color: #17702f; } .state.bad { color: #a11; }
#clock { font: 1.6rem ui-monospace, monospace; }
ol.log { font-family: ui-monospace, monospace; font-size: .9rem; max-height: 12rem; overflow-y: auto; background: #fafafa; margin: .5rem 0 0; padding: .4rem 2rem; }
input[type=text] { font: inherit; padding: .15rem .3rem; }
</style>
</head>
<body>
<h1>nsgi demo</h1>
<p>One nsgi app, served by nsgi's own HTTP/1.1 server. Everything below is plain HTML and a little script.</p>

<section>
<h2>Live clock: server-sent events <span id="sse-state" class="state">connecting</span></h2>
<p><output id="clock">--:--:--</output> &nbsp; <span id="clock-count">0</span> events received from
<a href="${at}/events/clock"><code>/events/clock</code></a>, a <code>text/event-stream</code> the
<code>sse()</code> helper frames; the browser's <code>EventSource</code> reconnects on its own and
resumes from <code>Last-Event-ID</code>.</p>
</section>

<section>
<h2>Echo: a WebSocket <span id="ws-state" class="state">connecting</span></h2>
<form id="ws-form"><input type="text" id="ws-input" placeholder="say something" autocomplete="off">
<button type="submit">Send</button></form>
<ol id="ws-log" class="log"></ol>
<p>Messages go to <code>/ws/echo</code>, where <code>websocketApp()</code> hands the upgraded
connection to <code>ws</code>, and come straight back.</p>
</section>

<section>
<h2>Chat: long polling <span id="chat-state" class="state">connecting</span></h2>
<form id="chat-form"><input type="text" id="chat-name" placeholder="name" size="10" autocomplete="off">
<input type="text" id="chat-text" placeholder="message" autocomplete="off"> <button type="submit">Send</button></form>
<ol id="chat-log" class="log"></ol>
<p>Open this page in two windows. <code>POST /chat/send</code> publishes; each page waits in
<code>GET /chat/poll?since=N</code>, answered the moment a message arrives, or with 204 after 25 s.</p>
</section>

<h2>More examples</h2>
<ul>
<li><a href="${at}/stream?mb=1024" download="nsgi-1GiB.bin">Download 1 GiB</a>, streamed from a generator and pulled only as fast as your browser saves it
  (<a href="${at}/stream?mb=16">/stream?mb=16</a> for a smaller one).</li>
<li><a href="${at}/hello/user/1">/hello/user/1</a>: the seed article's app, <code>Request GET /user/1 has been processed</code>.</li>
<li><a href="${at}/clock?n=10">/clock?n=10</a>: one line a second as plain text; the head is sent before the first tick.</li>
<li><a href="${at}/upload">/upload</a>: POST a body, get its SHA-256, hashed as it streams in.
  <input type="file" id="file"> <button id="send" type="button">Upload</button> <output id="result"></output></li>
<li><a href="${at}/files/">/files/</a>: a download server with resume (Range, <code>curl -C -</code>), ETag/304,
  and paths that try to leave its folder refused (<code>staticFiles</code>, <code>sendFile</code>, <code>compress</code>).</li>
<li><a href="${at}/express/">/express/</a>: an Express 5 app on nsgi's server through <code>fromNodeListener</code>
  (<a href="${at}/express/users/7">/express/users/7</a>, <a href="${at}/express/countdown">/express/countdown</a>),
  with an nsgi app mounted back inside it (<a href="${at}/express/nsgi/x">/express/nsgi/x</a>).</li>
<li><a href="${at}/errors">/errors</a>: a failure turned into a 500 page through <code>excInfo</code>;
  <a href="${at}/errors/late">/errors/late</a>: a failure after the first chunk, so the body is cut short.</li>
</ul>

<script>
const base = ${baseJs};
const $ = (id) => document.getElementById(id);
function setState(id, text, ok) {
  const el = $(id);
  el.textContent = text;
  el.className = 'state ' + (ok ? 'ok' : 'bad');
}
function append(list, text) {
  const item = document.createElement('li');
  item.textContent = text;
  list.append(item);
  list.scrollTop = list.scrollHeight;
}

// Server-sent events: EventSource does the reconnecting and sends Last-Event-ID itself.
let ticks = 0;
const events = new EventSource(base + '/events/clock');
events.addEventListener('open', () => setState('sse-state', 'open', true));
events.addEventListener('error', () => setState('sse-state', 'reconnecting', false));
events.addEventListener('tick', (event) => {
  $('clock').textContent = new Date(event.data).toLocaleTimeString();
  $('clock-count').textContent = String(++ticks);
});

// WebSocket echo.
const wsUrl = new URL(base + '/ws/echo', location.href);
wsUrl.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
const socket = new WebSocket(wsUrl);
socket.addEventListener('open', () => setState('ws-state', 'open', true));
socket.addEventListener('close', (event) => setState('ws-state', 'closed (' + event.code + ')', false));
socket.addEventListener('message', (event) => append($('ws-log'), '< ' + event.data));
$('ws-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const text = $('ws-input').value;
  if (text === '' || socket.readyState !== WebSocket.OPEN) return;
  socket.send(text);
  append($('ws-log'), '> ' + text);
  $('ws-input').value = '';
});

// Long-polling chat: one request waits at a time; 200 brings messages, 204 means ask again.
let since = 0;
async function pollForever() {
  for (;;) {
    try {
      const answer = fetch(base + '/chat/poll?since=' + since, { cache: 'no-store' });
      setState('chat-state', 'waiting for messages', true);
      const res = await answer;
      if (res.status === 200) {
        const { messages, lastId } = await res.json();
        for (const m of messages) append($('chat-log'), m.name + ': ' + m.text);
        since = lastId;
      } else if (res.status !== 204) {
        await new Promise((resolve) => setTimeout(resolve, 1000));
      }
    } catch {
      setState('chat-state', 'offline, retrying', false);
      await new Promise((resolve) => setTimeout(resolve, 2000));
    }
  }
}
pollForever();
$('chat-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const text = $('chat-text').value;
  if (text.trim() === '') return;
  $('chat-text').value = '';
  await fetch(base + '/chat/send', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ name: $('chat-name').value || 'anonymous', text }),
  });
});

// Upload: the file goes up as the request body, hashed by the server as it streams in.
$('send').addEventListener('click', async () => {
  const file = $('file').files[0];
  if (!file) return;
  const res = await fetch(base + '/upload', { method: 'POST', body: file });
  $('result').textContent = await res.text();
});
</script>
</body>
</html>
`;
}

/** escapeHtml makes text safe inside an HTML attribute or between tags. */
function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
