const N = 2e6;
function plain(i, src) { return { A: 'GET', B: '', C: '/x', D: '', E: '/x', F: 'h', G: '80', H: 'HTTP/1.1', I: '1', J: '2', 'nsgi.version': 1, 'nsgi.url_scheme': 'http', 'nsgi.input': src, 'nsgi.errors': src, 'nsgi.signal': src, 'nsgi.headers': src, 'nsgi.multithread': false, 'nsgi.multiprocess': false, 'nsgi.run_once': false }; }
function acc(i, src) { return { A: 'GET', B: '', C: '/x', D: '', E: '/x', F: 'h', G: '80', H: 'HTTP/1.1', I: '1', J: '2', 'nsgi.version': 1, 'nsgi.url_scheme': 'http', 'nsgi.input': src, 'nsgi.errors': src, get 'nsgi.signal'() { return src.signal }, set 'nsgi.signal'(v) { Object.defineProperty(this, 'nsgi.signal', {value: v}) }, 'nsgi.headers': src, 'nsgi.multithread': false, 'nsgi.multiprocess': false, 'nsgi.run_once': false }; }
class X { constructor() { this.a = 1 } m() { return this.a } n() {} }
function binds() { const x = new X(); return [x.m.bind(x), x.n.bind(x), x.m.bind(x), x.n.bind(x), x.m.bind(x)]; }
function closures() { const x = new X(); return [() => x.m(), () => x.n(), () => x.m(), () => x.n(), () => x.m()]; }
function ac() { return new AbortController(); }
for (const [name, f] of [['plain', plain], ['accessor', acc], ['5 binds', binds], ['5 closures', closures], ['AbortController', ac], ['plain', plain], ['accessor', acc]]) {
  let sink; const t = process.hrtime.bigint();
  for (let i = 0; i < N; i++) { sink = f(i, {signal: 1}); if (sink.HTTP_X) console.log(1); sink.HTTP_HOST = 'x'; }
  console.log(name, Number(process.hrtime.bigint() - t) / N, 'ns');
}
