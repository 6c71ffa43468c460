"""The financial sentiment monitor (`stepwise monitor`): a stream of events in, per-company sentiment per
time window in SQLite, alerts when it turns, an HTML report to look at.

    events     read and validate JSONL events; follow a file that keeps growing
    companies  which companies a text is about (cashtags, a tagger's ORG entities)
    store      the SQLite store (WAL): events, mentions, per-window aggregates, rejects, alerts, outbox
    alerts     the change detector (z-score against a rolling baseline) and the webhook outbox
    report     the self-contained HTML report
    stream     a team-written demo stream with an injected negative surge

The job that composes them is `stepwise.recipes.monitor`.
"""
