-- EDI trading partners: control numbers we issue, interchanges we received (duplicate ISA13
-- detection per sender) and the functional groups we sent, with their 997s.

CREATE TABLE edi_control_numbers (
    partner         TEXT    NOT NULL,
    kind            TEXT    NOT NULL,     -- 'interchange' (ISA13) or 'group' (GS06)
    next            BIGINT NOT NULL,
    PRIMARY KEY (partner, kind)
);

CREATE TABLE edi_interchanges_in (
    sender          TEXT    NOT NULL,     -- ISA05:ISA06, padding trimmed
    control         TEXT    NOT NULL,     -- ISA13
    partner         TEXT    NOT NULL,
    inbox_id        BIGINT,
    received_at     BIGINT NOT NULL,
    PRIMARY KEY (sender, control)
);

CREATE TABLE edi_groups_out (
    partner             TEXT    NOT NULL,
    group_control       TEXT    NOT NULL, -- GS06
    functional_id       TEXT    NOT NULL, -- GS01
    interchange_control TEXT    NOT NULL, -- ISA13
    sets                BIGINT NOT NULL,
    sent_at             BIGINT NOT NULL,
    status              TEXT    NOT NULL, -- sent, accepted, accepted_with_errors, partial, rejected
    ack_at              BIGINT,
    ack_detail          TEXT,             -- the 997's AK2/AK5 and AK9, as JSON
    PRIMARY KEY (partner, group_control)
);
CREATE INDEX edi_groups_out_status ON edi_groups_out (status, sent_at);
