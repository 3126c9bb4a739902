-- A store as written by eodes-node before Alembic (schema_version 3), two certificates;
-- sqlite3 iterdump of it. Opened by tests/integration/test_sql_migrations.py.
BEGIN TRANSACTION;
CREATE TABLE certificate_history (
	id INTEGER NOT NULL, 
	role VARCHAR(16) NOT NULL, 
	number VARCHAR(40) NOT NULL, 
	at FLOAT NOT NULL, 
	event VARCHAR(32) NOT NULL, 
	"before" VARCHAR(16), 
	"after" VARCHAR(16) NOT NULL, 
	message_id VARCHAR(36) NOT NULL, 
	chain VARCHAR(64) NOT NULL, 
	PRIMARY KEY (id)
);
INSERT INTO "certificate_history" VALUES(1,'exporter','KR-OLD-1',1767607200.0,'submitted',NULL,'pending','out-1','8854c9e5c9821b52d64465cd559aba7db8abb6295c0dec9c51f274b38966f4b5');
INSERT INTO "certificate_history" VALUES(2,'importer','CN-OLD-9',1767607200.0,'received',NULL,'available','in-1','8d20a995fc9ca8c818b6285e16001e0140aa18e01e3020e37e623115feaa93ab');
CREATE TABLE certificate_index (
	role VARCHAR(16) NOT NULL, 
	number VARCHAR(40) NOT NULL, 
	number_ci VARCHAR(40) NOT NULL, 
	history_id INTEGER NOT NULL, 
	agreement VARCHAR(40), 
	agreement_ci VARCHAR(40), 
	issue_date VARCHAR(10), 
	valid_until VARCHAR(10), 
	exporter_country VARCHAR(2), 
	importer_country VARCHAR(2), 
	reference_number VARCHAR(200), 
	reference_ci VARCHAR(200), 
	reference_code VARCHAR(32), 
	replaces VARCHAR(40), 
	PRIMARY KEY (role, number)
);
CREATE TABLE certificates (
	role VARCHAR(16) NOT NULL, 
	number VARCHAR(40) NOT NULL, 
	state VARCHAR(16) NOT NULL, 
	coo_message_id VARCHAR(36) NOT NULL, 
	updated_at FLOAT NOT NULL, 
	PRIMARY KEY (role, number)
);
INSERT INTO "certificates" VALUES('exporter','KR-OLD-1','pending','out-1',1767607200.0);
INSERT INTO "certificates" VALUES('importer','CN-OLD-9','available','in-1',1767607200.0);
CREATE TABLE inbound_messages (
	sender VARCHAR(2) NOT NULL, 
	message_id VARCHAR(36) NOT NULL, 
	kind VARCHAR(32) NOT NULL, 
	digest VARCHAR(43) NOT NULL, 
	token BLOB NOT NULL, 
	status VARCHAR(16) NOT NULL, 
	code VARCHAR(32), 
	text TEXT NOT NULL, 
	certificate_number VARCHAR(40), 
	receipt_entry TEXT, 
	receipt_id VARCHAR(36), 
	received_at FLOAT NOT NULL, 
	PRIMARY KEY (sender, message_id)
);
INSERT INTO "inbound_messages" VALUES('CN','in-1','coo','ggggggggggggggggggggggggggggggggggggggggggg',X'65794A2E632E64','accepted',NULL,'','CN-OLD-9',NULL,NULL,1767607200.0);
CREATE TABLE outbound_messages (
	message_id VARCHAR(36) NOT NULL, 
	kind VARCHAR(32) NOT NULL, 
	certificate_number VARCHAR(40), 
	correlation_id VARCHAR(36), 
	token BLOB NOT NULL, 
	local_key VARCHAR(200), 
	record_digest VARCHAR(64), 
	status VARCHAR(16) NOT NULL, 
	attempts INTEGER NOT NULL, 
	next_attempt_at FLOAT, 
	receipt_code VARCHAR(32), 
	receipt_text TEXT, 
	created_at FLOAT NOT NULL, 
	updated_at FLOAT NOT NULL, 
	PRIMARY KEY (message_id), 
	UNIQUE (local_key)
);
INSERT INTO "outbound_messages" VALUES('out-1','coo','KR-OLD-1',NULL,X'65794A2E612E62','local-1','dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd','pending',1,5.0,NULL,NULL,1767607200.0,1767607200.0);
CREATE TABLE outbox (
	id INTEGER NOT NULL, 
	destination VARCHAR(200) NOT NULL, 
	body BLOB NOT NULL, 
	message_id VARCHAR(36) NOT NULL, 
	kind VARCHAR(40) NOT NULL, 
	headers TEXT NOT NULL, 
	content_type VARCHAR(64) NOT NULL, 
	published BOOLEAN NOT NULL, 
	bound_to VARCHAR(120), 
	PRIMARY KEY (id)
);
CREATE TABLE schema_version (
	version INTEGER NOT NULL
);
INSERT INTO "schema_version" VALUES(1);
INSERT INTO "schema_version" VALUES(2);
INSERT INTO "schema_version" VALUES(3);
CREATE TABLE verification_requests (
	request_id VARCHAR(36) NOT NULL, 
	role VARCHAR(16) NOT NULL, 
	certificate_number VARCHAR(40) NOT NULL, 
	request_reference VARCHAR(128) NOT NULL, 
	reply_due VARCHAR(10) NOT NULL, 
	due_at FLOAT NOT NULL, 
	state VARCHAR(16) NOT NULL, 
	response_id VARCHAR(36), 
	result VARCHAR(16), 
	updated_at FLOAT NOT NULL, 
	PRIMARY KEY (request_id)
);
CREATE INDEX ix_outbound_due ON outbound_messages (status, next_attempt_at);
CREATE INDEX ix_certificate_history_number ON certificate_history (number);
CREATE INDEX ix_outbox_bound ON outbox (bound_to);
CREATE INDEX ix_outbox_pending ON outbox (published, id);
CREATE INDEX ix_verification_due ON verification_requests (role, state, due_at);
CREATE INDEX ix_certificate_index_reference ON certificate_index (reference_ci);
CREATE INDEX ix_certificate_index_replaces ON certificate_index (replaces);
CREATE INDEX ix_certificate_index_issued ON certificate_index (issue_date);
CREATE INDEX ix_certificate_index_agreement ON certificate_index (agreement_ci, issue_date);
CREATE INDEX ix_certificate_index_history ON certificate_index (history_id);
CREATE INDEX ix_certificate_index_number ON certificate_index (number_ci);
CREATE INDEX ix_certificates_updated ON certificates (updated_at);
CREATE INDEX ix_certificates_state ON certificates (state, updated_at);
CREATE INDEX ix_certificates_counts ON certificates (role, state);
CREATE INDEX ix_outbound_pending_age ON outbound_messages (status, created_at);
CREATE INDEX ix_outbound_certificate ON outbound_messages (certificate_number);
CREATE INDEX ix_inbound_certificate ON inbound_messages (certificate_number);
CREATE INDEX ix_inbound_kind_received ON inbound_messages (kind, received_at);
COMMIT;
