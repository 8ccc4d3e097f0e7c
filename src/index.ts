/**
 * nsgi's public API. The contract's types come from `protocol/nsgi.ts`; everything here runs.
 */
export type {
  App,
  Body,
  Chunk,
  EarlyHints,
  Environ,
  ErrorStream,
  ExcInfo,
  HeaderList,
  Input,
  SetTrailers,
  StartResponse,
  Write,
} from '../protocol/nsgi.ts';
export { serve, SERVER_DEFAULTS, type ServeOptions, type Server } from './server.ts';
export { AppError, ClientGoneError, ProtocolError } from './errors.ts';
export { RequestParser, DEFAULT_LIMITS, type ParserLimits, type ParserEvent, type RequestHead } from './http1/parser.ts';
