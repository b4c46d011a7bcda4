// Type declarations of marmot.js, the browser client of a marmot server.
// The API is described in docs/BROWSER.md.

export type StateName = 'disconnected' | 'connecting' | 'connected' | 'reconnecting' | 'disconnecting' | 'error';

/** Connection states, named as in the Go client. */
export declare const State: {
  readonly Disconnected: 'disconnected';
  readonly Connecting: 'connecting';
  readonly Connected: 'connected';
  readonly Reconnecting: 'reconnecting';
  readonly Disconnecting: 'disconnecting';
  readonly Error: 'error';
};

/** The human description of a state ("Connected to server"). */
export declare function describeState(s: StateName): string;

/** What a payload may be: text is sent as UTF-8. */
export type Payload = string | Uint8Array | ArrayBuffer | ArrayBufferView;

export declare class MarmotError extends Error {}
/** An error reply from the server. */
export declare class RemoteError extends MarmotError {
  readonly code: number;
  readonly remoteMessage: string;
}
export declare class TimeoutError extends MarmotError {}
export declare class ClosedError extends MarmotError {
  readonly code: number;
  readonly reason: string;
}
export declare class EncryptionError extends MarmotError {}

/** The modes and key sizes of the secure profile that WebCrypto can do. */
export declare const browserModes: readonly ('gcm' | 'cbc' | 'ctr' | 'cfb' | 'ofb')[];
export declare const browserKeySizes: readonly (128 | 256)[];

/** One envelope received from the server. */
export declare class Message {
  readonly kind: 'data' | 'command' | 'request' | 'reply' | 'error';
  readonly id: number;
  readonly name: string;
  readonly code: number;
  readonly meta: Record<string, string>;
  readonly room: string;
  readonly offset: number;
  readonly payload: Uint8Array;
  readonly text: string;
  json<T = unknown>(): T;
  /** Answers a request from the server. */
  reply(data?: Payload): void;
  replyError(code: number, text: string): void;
}

export interface EncryptionOptions {
  /** The passphrase the server was given. */
  key: string;
  mode?: 'gcm' | 'cbc' | 'ctr' | 'cfb' | 'ofb';
  keySize?: 128 | 256;
  acceptModes?: ('gcm' | 'cbc' | 'ctr' | 'cfb' | 'ofb')[];
  acceptKeySizes?: (128 | 256)[];
}

export interface ClientConfig {
  /** ws:// or wss:// URL of the endpoint; default the page's host, /websocket. */
  url?: string;
  /** 'auto' (WebSocket, else HTTP), 'websocket' or 'http'. */
  transport?: 'auto' | 'websocket' | 'http';
  /** Milliseconds for one connection attempt, handshake included (30000). */
  connectionTimeout?: number;
  /**
   * An authentication token (JWT for jwtauth), or a function returning one,
   * asked again before every connection attempt (so a reconnect after close
   * 4001, expired, uses a fresh one). Sent as the `token` query parameter.
   */
  token?: string | (() => string | Promise<string>);
  /** Default timeout of request, ms (30000). */
  requestTimeout?: number;
  autoReconnect?: boolean;
  reconnectStrategy?: 'fixed' | 'exponential';
  /** ms (5000); exponential doubles it per attempt up to maxReconnectInterval. */
  reconnectInterval?: number;
  maxReconnectInterval?: number;
  /** Fraction, ±: 0.1 (10 %). */
  reconnectJitter?: number;
  /** 0: unlimited. */
  maxReconnectAttempts?: number;
  /** ms a connection must stay up to reset attempts (max(5000, reconnectInterval)). */
  healthyAfter?: number;
  /** Retry a failed first connect with the same backoff. */
  retryFirstConnect?: boolean;
  /** The secure encryption profile; off when absent. */
  encryption?: EncryptionOptions | null;
}

export interface ClientStats {
  bytesReceived: number;
  bytesSent: number;
  messagesReceived: number;
  messagesSent: number;
  reconnects: number;
}

export interface ClientEvents {
  statechange: (oldState: StateName, newState: StateName) => void;
  connect: () => void;
  disconnect: (reason: { code: number; reason: string }) => void;
  message: (m: Message) => void;
  data: (wire: string | Uint8Array) => void;
  datasent: (wire: string | Uint8Array) => void;
  error: (err: Error) => void;
  reconnecting: (attempt: number, delayMs: number) => void;
  reconnectfailed: (attempt: number, err: Error) => void;
  recover: (room: string, recovered: boolean, missed: number, reason: string) => void;
  presence: (room: string, client: number, joined: boolean) => void;
}

export interface JoinResult {
  epoch?: string;
  offset?: number;
  recover?: { recovered: boolean; missed: number; reason?: string };
}

export declare class Client {
  constructor(config?: ClientConfig | string);
  readonly config: Required<ClientConfig>;
  readonly state: StateName;
  readonly stateDescription: string;
  readonly connected: boolean;
  readonly reconnecting: boolean;
  readonly stats: ClientStats;
  readonly rooms: string[];
  /** 'websocket' or 'http' once connected. */
  readonly transport: '' | 'websocket' | 'http';
  /** The negotiated mode, "gcm/256", when encrypted. */
  readonly encryptionMode: string;
  on<K extends keyof ClientEvents>(event: K, fn: ClientEvents[K]): () => void;
  connect(): Promise<void>;
  disconnect(): Promise<void>;
  send(data: Payload): void;
  sendCommand(name: string, payload?: Payload): void;
  request(name: string, payload?: Payload, options?: { timeout?: number }): Promise<Message>;
  join(room: string): Promise<JoinResult>;
  leave(room: string): Promise<void>;
  publish(room: string, data: Payload): Promise<void>;
  presence(room: string): Promise<number[]>;
}

/** Makes a Client and connects it. */
export declare function connect(config?: ClientConfig | string): Promise<Client>;
