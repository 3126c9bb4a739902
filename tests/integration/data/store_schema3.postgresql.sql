-- A store as written by eodes-node before Alembic (schema_version 3), two certificates;
-- pg_dump --inserts of it, psql meta-commands removed. Opened by tests/integration/test_sql_migrations.py.
--
-- PostgreSQL database dump
--


-- Dumped from database version 15.20 (Debian 15.20-0+deb12u1)
-- Dumped by pg_dump version 15.20 (Debian 15.20-0+deb12u1)

SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

SET default_tablespace = '';

SET default_table_access_method = heap;

--
-- Name: certificate_history; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.certificate_history (
    id integer NOT NULL,
    role character varying(16) NOT NULL,
    number character varying(40) NOT NULL,
    at double precision NOT NULL,
    event character varying(32) NOT NULL,
    before character varying(16),
    after character varying(16) NOT NULL,
    message_id character varying(36) NOT NULL,
    chain character varying(64) NOT NULL
);


--
-- Name: certificate_history_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

CREATE SEQUENCE public.certificate_history_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: certificate_history_id_seq; Type: SEQUENCE OWNED BY; Schema: public; Owner: -
--

ALTER SEQUENCE public.certificate_history_id_seq OWNED BY public.certificate_history.id;


--
-- Name: certificate_index; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.certificate_index (
    role character varying(16) NOT NULL,
    number character varying(40) NOT NULL,
    number_ci character varying(40) NOT NULL,
    history_id integer NOT NULL,
    agreement character varying(40),
    agreement_ci character varying(40),
    issue_date character varying(10),
    valid_until character varying(10),
    exporter_country character varying(2),
    importer_country character varying(2),
    reference_number character varying(200),
    reference_ci character varying(200),
    reference_code character varying(32),
    replaces character varying(40)
);


--
-- Name: certificates; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.certificates (
    role character varying(16) NOT NULL,
    number character varying(40) NOT NULL,
    state character varying(16) NOT NULL,
    coo_message_id character varying(36) NOT NULL,
    updated_at double precision NOT NULL
);


--
-- Name: inbound_messages; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.inbound_messages (
    sender character varying(2) NOT NULL,
    message_id character varying(36) NOT NULL,
    kind character varying(32) NOT NULL,
    digest character varying(43) NOT NULL,
    token bytea NOT NULL,
    status character varying(16) NOT NULL,
    code character varying(32),
    text text NOT NULL,
    certificate_number character varying(40),
    receipt_entry text,
    receipt_id character varying(36),
    received_at double precision NOT NULL
);


--
-- Name: outbound_messages; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.outbound_messages (
    message_id character varying(36) NOT NULL,
    kind character varying(32) NOT NULL,
    certificate_number character varying(40),
    correlation_id character varying(36),
    token bytea NOT NULL,
    local_key character varying(200),
    record_digest character varying(64),
    status character varying(16) NOT NULL,
    attempts integer NOT NULL,
    next_attempt_at double precision,
    receipt_code character varying(32),
    receipt_text text,
    created_at double precision NOT NULL,
    updated_at double precision NOT NULL
);


--
-- Name: outbox; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.outbox (
    id integer NOT NULL,
    destination character varying(200) NOT NULL,
    body bytea NOT NULL,
    message_id character varying(36) NOT NULL,
    kind character varying(40) NOT NULL,
    headers text NOT NULL,
    content_type character varying(64) NOT NULL,
    published boolean NOT NULL,
    bound_to character varying(120)
);


--
-- Name: outbox_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

CREATE SEQUENCE public.outbox_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: outbox_id_seq; Type: SEQUENCE OWNED BY; Schema: public; Owner: -
--

ALTER SEQUENCE public.outbox_id_seq OWNED BY public.outbox.id;


--
-- Name: schema_version; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.schema_version (
    version integer NOT NULL
);


--
-- Name: verification_requests; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.verification_requests (
    request_id character varying(36) NOT NULL,
    role character varying(16) NOT NULL,
    certificate_number character varying(40) NOT NULL,
    request_reference character varying(128) NOT NULL,
    reply_due character varying(10) NOT NULL,
    due_at double precision NOT NULL,
    state character varying(16) NOT NULL,
    response_id character varying(36),
    result character varying(16),
    updated_at double precision NOT NULL
);


--
-- Name: certificate_history id; Type: DEFAULT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.certificate_history ALTER COLUMN id SET DEFAULT nextval('public.certificate_history_id_seq'::regclass);


--
-- Name: outbox id; Type: DEFAULT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.outbox ALTER COLUMN id SET DEFAULT nextval('public.outbox_id_seq'::regclass);


--
-- Data for Name: certificate_history; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.certificate_history VALUES (1, 'exporter', 'KR-OLD-1', 1767607200, 'submitted', NULL, 'pending', 'out-1', '8854c9e5c9821b52d64465cd559aba7db8abb6295c0dec9c51f274b38966f4b5');
INSERT INTO public.certificate_history VALUES (2, 'importer', 'CN-OLD-9', 1767607200, 'received', NULL, 'available', 'in-1', '8d20a995fc9ca8c818b6285e16001e0140aa18e01e3020e37e623115feaa93ab');


--
-- Data for Name: certificate_index; Type: TABLE DATA; Schema: public; Owner: -
--



--
-- Data for Name: certificates; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.certificates VALUES ('exporter', 'KR-OLD-1', 'pending', 'out-1', 1767607200);
INSERT INTO public.certificates VALUES ('importer', 'CN-OLD-9', 'available', 'in-1', 1767607200);


--
-- Data for Name: inbound_messages; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.inbound_messages VALUES ('CN', 'in-1', 'coo', 'ggggggggggggggggggggggggggggggggggggggggggg', '\x65794a2e632e64', 'accepted', NULL, '', 'CN-OLD-9', NULL, NULL, 1767607200);


--
-- Data for Name: outbound_messages; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.outbound_messages VALUES ('out-1', 'coo', 'KR-OLD-1', NULL, '\x65794a2e612e62', 'local-1', 'dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd', 'pending', 1, 5, NULL, NULL, 1767607200, 1767607200);


--
-- Data for Name: outbox; Type: TABLE DATA; Schema: public; Owner: -
--



--
-- Data for Name: schema_version; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.schema_version VALUES (1);
INSERT INTO public.schema_version VALUES (2);
INSERT INTO public.schema_version VALUES (3);


--
-- Data for Name: verification_requests; Type: TABLE DATA; Schema: public; Owner: -
--



--
-- Name: certificate_history_id_seq; Type: SEQUENCE SET; Schema: public; Owner: -
--

SELECT pg_catalog.setval('public.certificate_history_id_seq', 2, true);


--
-- Name: outbox_id_seq; Type: SEQUENCE SET; Schema: public; Owner: -
--

SELECT pg_catalog.setval('public.outbox_id_seq', 1, false);


--
-- Name: certificate_history certificate_history_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.certificate_history
    ADD CONSTRAINT certificate_history_pkey PRIMARY KEY (id);


--
-- Name: certificate_index certificate_index_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.certificate_index
    ADD CONSTRAINT certificate_index_pkey PRIMARY KEY (role, number);


--
-- Name: certificates certificates_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.certificates
    ADD CONSTRAINT certificates_pkey PRIMARY KEY (role, number);


--
-- Name: inbound_messages inbound_messages_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.inbound_messages
    ADD CONSTRAINT inbound_messages_pkey PRIMARY KEY (sender, message_id);


--
-- Name: outbound_messages outbound_messages_local_key_key; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.outbound_messages
    ADD CONSTRAINT outbound_messages_local_key_key UNIQUE (local_key);


--
-- Name: outbound_messages outbound_messages_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.outbound_messages
    ADD CONSTRAINT outbound_messages_pkey PRIMARY KEY (message_id);


--
-- Name: outbox outbox_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.outbox
    ADD CONSTRAINT outbox_pkey PRIMARY KEY (id);


--
-- Name: verification_requests verification_requests_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.verification_requests
    ADD CONSTRAINT verification_requests_pkey PRIMARY KEY (request_id);


--
-- Name: ix_certificate_history_number; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_certificate_history_number ON public.certificate_history USING btree (number);


--
-- Name: ix_certificate_index_agreement; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_certificate_index_agreement ON public.certificate_index USING btree (agreement_ci, issue_date);


--
-- Name: ix_certificate_index_history; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_certificate_index_history ON public.certificate_index USING btree (history_id);


--
-- Name: ix_certificate_index_issued; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_certificate_index_issued ON public.certificate_index USING btree (issue_date);


--
-- Name: ix_certificate_index_number; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_certificate_index_number ON public.certificate_index USING btree (number_ci);


--
-- Name: ix_certificate_index_reference; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_certificate_index_reference ON public.certificate_index USING btree (reference_ci);


--
-- Name: ix_certificate_index_replaces; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_certificate_index_replaces ON public.certificate_index USING btree (replaces);


--
-- Name: ix_certificates_counts; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_certificates_counts ON public.certificates USING btree (role, state);


--
-- Name: ix_certificates_state; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_certificates_state ON public.certificates USING btree (state, updated_at);


--
-- Name: ix_certificates_updated; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_certificates_updated ON public.certificates USING btree (updated_at);


--
-- Name: ix_inbound_certificate; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_inbound_certificate ON public.inbound_messages USING btree (certificate_number);


--
-- Name: ix_inbound_kind_received; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_inbound_kind_received ON public.inbound_messages USING btree (kind, received_at);


--
-- Name: ix_outbound_certificate; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_outbound_certificate ON public.outbound_messages USING btree (certificate_number);


--
-- Name: ix_outbound_due; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_outbound_due ON public.outbound_messages USING btree (status, next_attempt_at);


--
-- Name: ix_outbound_pending_age; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_outbound_pending_age ON public.outbound_messages USING btree (status, created_at);


--
-- Name: ix_outbox_bound; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_outbox_bound ON public.outbox USING btree (bound_to);


--
-- Name: ix_outbox_pending; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_outbox_pending ON public.outbox USING btree (published, id);


--
-- Name: ix_verification_due; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_verification_due ON public.verification_requests USING btree (role, state, due_at);


--
-- PostgreSQL database dump complete
--


