// Subscribes with the graphql-ws client and prints each result as one JSON line.
// Usage: HYPERNIX_TOKEN=... node subscribe.mjs URL QUERY [VARIABLES_JSON]
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';

const [url, query, variables] = process.argv.slice(2);
const client = createClient({
  url,
  webSocketImpl: WebSocket,
  retryAttempts: 0,
  connectionParams: process.env.HYPERNIX_TOKEN ? { token: process.env.HYPERNIX_TOKEN } : {},
});
client.subscribe(
  { query, variables: variables ? JSON.parse(variables) : {} },
  {
    next: (value) => console.log(JSON.stringify(value)),
    error: (err) => { console.error(JSON.stringify(err)); process.exit(1); },
    complete: () => process.exit(0),
  },
);
console.error('subscribed');
