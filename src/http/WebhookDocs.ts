/**
 * `GET`/`POST /webhook` are plain router routes (the signature is checked over
 * the raw bytes before anything parses them), so the HttpApi does not see
 * them; this adds them to `/openapi.json` by hand, as the contract describes.
 */
const json = (description: string) => ({
  description,
  content: {
    "application/json": {
      schema: { type: "object", properties: { detail: { type: "string" } }, required: ["detail"] }
    }
  }
})

const webhookPaths = {
  "/webhook": {
    get: {
      tags: ["Webhook"],
      operationId: "webhook.verify",
      summary: "Meta's subscription handshake",
      parameters: [
        { name: "hub.mode", in: "query", required: true, schema: { type: "string", const: "subscribe" } },
        { name: "hub.verify_token", in: "query", required: true, schema: { type: "string" } },
        { name: "hub.challenge", in: "query", required: true, schema: { type: "string" } }
      ],
      responses: {
        "200": { description: "the challenge, as is", content: { "text/plain": { schema: { type: "string" } } } },
        "403": { description: "wrong mode or token" }
      }
    },
    post: {
      tags: ["Webhook"],
      operationId: "webhook.receive",
      summary: "A signed Instagram webhook; 200 once every event in it is committed to the journal",
      parameters: [
        {
          name: "X-Hub-Signature-256",
          in: "header",
          required: true,
          description: "sha256=<lowercase hex HMAC-SHA256 of the raw body, keyed with the app secret>",
          schema: { type: "string", pattern: "^sha256=[0-9a-f]{64}$" }
        }
      ],
      requestBody: {
        required: true,
        content: {
          "application/json": {
            schema: {
              type: "object",
              required: ["object", "entry"],
              properties: {
                object: { type: "string" },
                entry: { type: "array", maxItems: 1000, items: { type: "object" } }
              }
            }
          }
        }
      },
      responses: {
        "200": {
          description: "every event recorded durably",
          content: {
            "application/json": {
              schema: {
                type: "object",
                properties: { status: { const: "ok" }, events: { type: "integer" }, duplicates: { type: "integer" } }
              }
            }
          }
        },
        "400": json("not a webhook: the detail says what is wrong"),
        "401": json("missing, malformed or wrong X-Hub-Signature-256"),
        "413": json("body over MAX_BODY_BYTES"),
        "429": json("too many requests from this client; see Retry-After"),
        "503": json("events could not be recorded now; see Retry-After")
      }
    }
  }
}

export const addWebhookPaths = (spec: Record<string, unknown>): Record<string, unknown> => ({
  ...spec,
  paths: { ...webhookPaths, ...(typeof spec.paths === "object" && spec.paths !== null ? spec.paths : {}) }
})
