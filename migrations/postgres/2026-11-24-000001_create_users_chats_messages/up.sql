-- Accounts, chats and messages. Types are the portable subset shared with PostgreSQL: text UUIDs,
-- naive UTC timestamps, 64-bit integer message ids.
CREATE TABLE users (
    id TEXT PRIMARY KEY NOT NULL,
    email TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    -- For revoking tokens (logout); nothing reads or bumps it yet.
    token_version BIGINT NOT NULL DEFAULT 0,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);

CREATE TABLE chats (
    id TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    title TEXT,
    -- Overrides the global system prompt for this chat when set.
    system_prompt TEXT,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);

-- "My chats, newest first" is the hottest read.
CREATE INDEX chats_user_id_updated_at ON chats (user_id, updated_at);

CREATE TABLE messages (
    id BIGSERIAL PRIMARY KEY NOT NULL,
    chat_id TEXT NOT NULL REFERENCES chats (id) ON DELETE CASCADE,
    role TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
    content TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('generating', 'complete', 'cancelled', 'error', 'interrupted')),
    -- The alias the user asked for, and what served it.
    model_alias TEXT,
    provider TEXT,
    provider_model TEXT,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    -- Estimated tokens of `content`, computed once so context windows need not re-tokenize history.
    content_tokens INTEGER,
    latency_ms INTEGER,
    finish_reason TEXT,
    -- How a reply that did not finish ended ('timeout', 'upstream_error', 'interrupted', ...): a kind the
    -- server turns into a sentence, never internal text.
    error_detail TEXT,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);

CREATE INDEX messages_chat_id_id ON messages (chat_id, id);
