# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""STS's GetCallerIdentity on the EC2 endpoint: which account a key signs for.

AWS clients ask it to learn their account number (amazon.aws's modules do before they compare
security group rules that name groups by ``account/group``). Eucalyptus had an STS ("tokens")
service; here it is the one read-only call, answered for a SigV4 credential scoped to ``sts`` or
``ec2`` on the same endpoint, in the AWS Query protocol's XML (``GetCallerIdentityResult``).
An access key belongs to an account, not a user: the caller is the account's root.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.euca.cloud.plugins.module_utils.api.base import action
from ansible_collections.euca.cloud.plugins.module_utils.ledger import accounts


@action("GetCallerIdentity", service="sts")
def get_caller_identity(ctx, params):
    with ctx.read() as txn:
        number = accounts.get_account(txn, ctx.account)["number"]
    return {"Arn": "arn:aws:iam::%s:root" % number, "UserId": number, "Account": number}
