-- Tokens each user spent per UTC day (`day` as YYYY-MM-DD), for the optional daily budget (DAILY_TOKEN_BUDGET).
-- A reply reserves the most it may spend before its provider is asked (`reserved`), and once it ends gives the
-- reservation back and adds what it spent (`used`); one conditional update reserves, so concurrent replies cannot
-- together pass the budget.
CREATE TABLE token_usage (
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    day TEXT NOT NULL,
    used BIGINT NOT NULL DEFAULT 0,
    reserved BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, day)
);
