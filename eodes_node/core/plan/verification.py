"""Planning verification requests and responses our local systems submit, and the
overdue notices of requests the partner left unanswered.

The clearance system submits a request at the feedback door (AMQP type
``verification-request``); the issuing system answers one at the records door (type
``verification-response``). Each becomes a signed message for the partner, sent and
resent like every other kind; a refused one is dead-lettered with a ``record_rejected``
event, as any local record.

This module is the one place the doors import from. The work lives in three:
``verification_common`` (what both sides share), ``verification_asking`` (requests and
overdue notices) and ``verification_answering`` (answers).
"""

from __future__ import annotations

from eodes_node.core.plan.verification_answering import answer_id as answer_id
from eodes_node.core.plan.verification_answering import parse_response as parse_response
from eodes_node.core.plan.verification_answering import plan_response as plan_response
from eodes_node.core.plan.verification_answering import response_query as response_query
from eodes_node.core.plan.verification_asking import OVERDUE_CODE as OVERDUE_CODE
from eodes_node.core.plan.verification_asking import overdue_query as overdue_query
from eodes_node.core.plan.verification_asking import parse_request as parse_request
from eodes_node.core.plan.verification_asking import plan_overdue as plan_overdue
from eodes_node.core.plan.verification_asking import plan_request as plan_request
from eodes_node.core.plan.verification_asking import request_query as request_query
from eodes_node.core.plan.verification_common import MAX_ANSWERS as MAX_ANSWERS
from eodes_node.core.plan.verification_common import REQUEST as REQUEST
from eodes_node.core.plan.verification_common import RESPONSE as RESPONSE
from eodes_node.core.plan.verification_common import Batch as Batch
from eodes_node.core.plan.verification_common import ReadyRequest as ReadyRequest
from eodes_node.core.plan.verification_common import ReadyResponse as ReadyResponse
from eodes_node.core.plan.verification_common import answer_key as answer_key
from eodes_node.core.plan.verification_common import merged as merged
