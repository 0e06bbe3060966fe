/**
 * `/webhook` is a plain router route (the signature is checked over the raw bytes before parsing),
 * so the HttpApi does not see it; this adds it to `/openapi.json` by hand.
 */
const json = (description: string, example: string) => ({
  description,
  content: {
    "application/json": {
      schema: { type: "object", properties: { detail: { type: "string" } }, required: ["detail"] },
      example: { detail: example }
    }
  }
})

const webhookExample = {
  object: "instagram",
  entry: [{
    id: "17841400000000000",
    time: 1764244800,
    changes: [{
      field: "comments",
      value: { id: "17900000000000001", text: "Love it!", from: { id: "17800000000000002", username: "fan" }, media: { id: "18100000000000000" } }
    }]
  }]
}

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
        "200": { description: "the challenge, as is", content: { "text/plain": { schema: { type: "string" }, example: "1158201444" } } },
        "403": json("wrong mode or token, or no challenge", "verification failed")
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
              },
              // Meta adds fields over time: everything beyond object and entry is kept as sent.
              additionalProperties: true
            },
            example: webhookExample
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
                properties: {
                  status: { const: "ok" },
                  events: { type: "integer" },
                  duplicates: { type: "integer" },
                  event_ids: { type: "array", items: { type: "string", pattern: "^[0-9a-f]{64}$" } }
                }
              },
              example: {
                status: "ok",
                events: 1,
                duplicates: 0,
                event_ids: ["9b3c2f0a4d1e6b7c8a9f0e1d2c3b4a5f6e7d8c9b0a1f2e3d4c5b6a7f8e9d0c1b"]
              }
            }
          }
        },
        "400": json("not a webhook: the detail says what is wrong", "entry must be an array"),
        "401": json("missing, malformed or wrong X-Hub-Signature-256", "signature does not match any configured key"),
        "413": json("body over MAX_BODY_BYTES", "body exceeds 5242880 bytes"),
        "429": json("too many requests from this client; see Retry-After", "too many requests"),
        "503": json("events could not be recorded now; see Retry-After", "events could not be recorded; retry later")
      }
    }
  }
}

export const addWebhookPaths = (spec: Record<string, unknown>): Record<string, unknown> => ({
  ...spec,
  paths: { ...webhookPaths, ...(typeof spec.paths === "object" && spec.paths !== null ? spec.paths : {}) }
})
