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
  FileSource,
  FileWrapper,
  FileWrapperOptions,
  HeaderList,
  Input,
  SetTrailers,
  StartResponse,
  Write,
} from '../protocol/nsgi.ts';
export { serve, SERVER_DEFAULTS, type ServeOptions, type Server } from './server.ts';
export { ListenFailure, type ListenTarget, type BoundAddress } from './listen-all.ts';
export type { ForwardedHeaders } from './forwarded.ts';
export { AppError, ClientGoneError, ProtocolError } from './errors.ts';
export { RequestParser, DEFAULT_LIMITS, type ParserLimits, type ParserEvent, type RequestHead } from './http1/parser.ts';
export {
  acceptWebSocket,
  websocketApp,
  isWebSocketRequest,
  websocketHandshakeProblem,
  CLOSE_GOING_AWAY,
  CLOSE_POLICY_VIOLATION,
  DEFAULT_WEBSOCKET_MAX_PAYLOAD,
  DEFAULT_WEBSOCKET_MAX_BUFFERED,
  DEFAULT_WEBSOCKET_SEND_STALL_MS,
  type OnConnection,
  type WebSocket,
  type WebSocketOptions,
  type WebSocketAppOptions,
} from './websocket.ts';
export { sse, sseResponse, lastEventId, formatEvent, SSE_HEADERS, DEFAULT_SSE_HEARTBEAT_MS, type SseEvent, type SseMessage, type SseOptions, type SseSource } from './helpers/sse.ts';
export { Topic, DEFAULT_TOPIC_CAPACITY, type Entry, type PollResult, type TopicOptions, type WaitOptions } from './helpers/longpoll.ts';
export { fileBody, FileReader, FILE_READ_SIZE } from './helpers/file-body.ts';
export { sendFile, type SendFileOptions } from './helpers/send-file.ts';
export { staticFiles, type StaticFilesOptions } from './helpers/static-files.ts';
export { compress, AVAILABLE_CODINGS, DEFAULT_MIN_SIZE, DEFAULT_BROTLI_QUALITY, type CompressFlush, type CompressOptions } from './helpers/compress.ts';
export { mount } from './helpers/mount.ts';
export { mediaTypeFor, MEDIA_TYPES, DEFAULT_MEDIA_TYPE } from './helpers/mime.ts';
export { validate, ValidationError, type ValidateOptions } from './validator.ts';
export { fromFetch, type FetchHandler } from './adapters/fetch-to-nsgi.ts';
export { toFetch, type ToFetchOptions } from './adapters/nsgi-to-fetch.ts';
export { toNodeListener, toNodeUpgradeListener, createNodeServer, type NodeListener, type NodeListenerOptions, type NodeUpgradeListener } from './adapters/node-http.ts';
export { fromNodeListener, type NodeRequestListener } from './adapters/node-listener.ts';
export * as testing from './testing.ts';
export type { TestRequest, TestResponse, TestStream } from './testing.ts';
export { BEGINNING, BrokerError, type Broker, type BrokerEntry, type BrokerKind, type BrokerSubscribeOptions, type BrokerSubscription, type BrokerWaitOptions, type PublishOptions, type ReadResult } from './broker/types.ts';
export { subscribeTo } from './broker/subscription.ts';
export { MemoryBroker, DEFAULT_BROKER_CAPACITY, type MemoryBrokerOptions } from './broker/memory.ts';
export { ClusterBroker, startBrokerRelay, CLUSTER_REQUEST_TIMEOUT_MS, type BrokerRelayOptions, type ClusterBrokerOptions } from './broker/cluster.ts';
export { RedisBroker, type RedisBrokerOptions } from './broker/redis.ts';
export { defaultBroker, createBroker, useBroker, BROKER_ENV } from './broker/default.ts';
export { isCursor, LATEST } from './broker/ids.ts';
export { sseTopic, topicEvents, DEFAULT_SSE_RETRY_MS, SSE_MISSED_EVENT, type SseTopicOptions } from './helpers/sse.ts';
export { WebSocketTopics, CLOSE_TRY_AGAIN_LATER, DEFAULT_TOPIC_SOCKET_BUFFER, type SlowSocketPolicy, type WebSocketTopicsOptions, type WebSocketTopicsStats } from './websocket-topics.ts';
export { type Since } from './helpers/longpoll.ts';
