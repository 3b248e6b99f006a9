-- EDI trading partners: control numbers we issue, interchanges we received (duplicate ISA13
-- detection per sender) and the functional groups we sent, with their 997s.

CREATE TABLE edi_control_numbers (
    partner         TEXT    NOT NULL,
    kind            TEXT    NOT NULL,     -- 'interchange' (ISA13) or 'group' (GS06)
    next            INTEGER NOT NULL,
    PRIMARY KEY (partner, kind)
) WITHOUT ROWID;

CREATE TABLE edi_interchanges_in (
    sender          TEXT    NOT NULL,     -- ISA05:ISA06, padding trimmed
    control         TEXT    NOT NULL,     -- ISA13
    partner         TEXT    NOT NULL,
    inbox_id        INTEGER,
    received_at     INTEGER NOT NULL,
    PRIMARY KEY (sender, control)
) WITHOUT ROWID;

CREATE TABLE edi_groups_out (
    partner             TEXT    NOT NULL,
    group_control       TEXT    NOT NULL, -- GS06
    functional_id       TEXT    NOT NULL, -- GS01
    interchange_control TEXT    NOT NULL, -- ISA13
    sets                INTEGER NOT NULL,
    sent_at             INTEGER NOT NULL,
    status              TEXT    NOT NULL, -- sent, accepted, accepted_with_errors, partial, rejected
    ack_at              INTEGER,
    ack_detail          TEXT,             -- the 997's AK2/AK5 and AK9, as JSON
    PRIMARY KEY (partner, group_control)
) WITHOUT ROWID;
CREATE INDEX edi_groups_out_status ON edi_groups_out (status, sent_at);
