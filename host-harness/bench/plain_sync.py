#!/usr/bin/env python3
"""The plain script issue 11 measures the connector against: NetSuite
customers to Salesforce Accounts with nothing but requests and
simple-salesforce. SuiteQL pages of 1,000 (token-based auth), sObject
Collections upserts of 200 on the external id, no state, no audit, no retry.

Reads the JSON `connector sim --json` prints (a file, or stdin) and prints
one JSON line: records, seconds, records_per_second, API calls.
"""

import argparse
import json
import sys
import time
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests_oauthlib import OAuth1
from simple_salesforce import Salesforce

PAGE = 1000
BATCH = 200

# Keyset paging on the id (offset paging stops at 100,000 rows in NetSuite).
QUERY = """
SELECT c.id, c.entityid, c.companyname, c.isperson, c.firstname, c.lastname,
       c.email, c.phone, BUILTIN.DF(c.terms) AS termsname,
       ba.addr1 AS billaddr1, ba.addr2 AS billaddr2, ba.city AS billcity,
       ba.state AS billstate, ba.zip AS billzip, ba.country AS billcountry,
       sa.addr1 AS shipaddr1, sa.addr2 AS shipaddr2, sa.city AS shipcity,
       sa.state AS shipstate, sa.zip AS shipzip, sa.country AS shipcountry
FROM customer c
LEFT JOIN customeraddressbookentityaddress ba ON ba.nkey = c.defaultbillingaddress
LEFT JOIN customeraddressbookentityaddress sa ON sa.nkey = c.defaultshippingaddress
WHERE c.id > {after}
ORDER BY c.id
"""


class PlainHttp(HTTPAdapter):
    """simple-salesforce always writes https:// URLs; the simulators listen
    on plain HTTP on loopback."""

    def send(self, request, **kwargs):
        request.url = "http://" + request.url[len("https://"):]
        return super().send(request, **kwargs)


def street(row, prefix):
    parts = [row.get(prefix + "addr1"), row.get(prefix + "addr2")]
    return "\n".join(p for p in parts if p) or None


def account(row):
    if row.get("isperson") == "T":
        name = " ".join(p for p in (row.get("firstname"), row.get("lastname")) if p)
    else:
        name = row.get("companyname") or row.get("entityid")
    email = row.get("email")
    return {
        "attributes": {"type": "Account"},
        "NetSuite_Id__c": row["id"],
        "Name": name,
        "Phone": row.get("phone"),
        "Email__c": email.lower() if email else None,
        "Payment_Terms__c": row.get("termsname"),
        "BillingStreet": street(row, "bill"),
        "BillingCity": row.get("billcity"),
        "BillingState": row.get("billstate"),
        "BillingPostalCode": row.get("billzip"),
        "BillingCountry": row.get("billcountry"),
        "ShippingStreet": street(row, "ship"),
        "ShippingCity": row.get("shipcity"),
        "ShippingState": row.get("shipstate"),
        "ShippingPostalCode": row.get("shipzip"),
        "ShippingCountry": row.get("shipcountry"),
    }


def netsuite_pages(sim, calls):
    auth = OAuth1(
        sim["netsuite_consumer_key"],
        sim["netsuite_consumer_secret"],
        sim["netsuite_token_id"],
        sim["netsuite_token_secret"],
        signature_method="HMAC-SHA256",
        realm=sim["netsuite_account_id"],
    )
    url = f"{sim['netsuite_base_url']}/services/rest/query/v1/suiteql"
    session = requests.Session()
    after = 0
    while True:
        calls["netsuite"] += 1
        response = session.post(
            url,
            params={"limit": PAGE, "offset": 0},
            json={"q": QUERY.format(after=after)},
            headers={"Prefer": "transient"},
            auth=auth,
        )
        response.raise_for_status()
        page = response.json()
        if page["items"]:
            yield page["items"]
            after = int(page["items"][-1]["id"])
        if not page["hasMore"]:
            return


def salesforce(sim):
    # A token request is not an API call: Salesforce's limits do not count it.
    token = requests.post(
        f"{sim['salesforce_login_url']}/services/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "client_id": sim["salesforce_client_id"],
            "client_secret": sim["salesforce_client_secret"],
        },
    )
    token.raise_for_status()
    token = token.json()
    session = requests.Session()
    session.mount("https://" + urlsplit(token["instance_url"]).netloc, PlainHttp())
    return Salesforce(instance_url=token["instance_url"], session_id=token["access_token"], session=session)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("endpoints", nargs="?", help="the JSON `connector sim --json` printed (default: stdin)")
    args = parser.parse_args()
    text = open(args.endpoints).read() if args.endpoints else sys.stdin.read()
    sim = json.loads(text[text.index("{"):])

    calls = {"netsuite": 0, "salesforce": 0}
    started = time.monotonic()
    sf = salesforce(sim)
    synced, failed = 0, []
    for rows in netsuite_pages(sim, calls):
        records = [account(r) for r in rows]
        for at in range(0, len(records), BATCH):
            calls["salesforce"] += 1
            results = sf.restful(
                "composite/sobjects/Account/NetSuite_Id__c",
                method="PATCH",
                json={"allOrNone": False, "records": records[at : at + BATCH]},
            )
            for record, result in zip(records[at : at + BATCH], results):
                if result.get("success"):
                    synced += 1
                else:
                    failed.append({"id": record["NetSuite_Id__c"], "errors": result.get("errors")})
    seconds = time.monotonic() - started
    print(
        json.dumps(
            {
                "path": "plain-script",
                "records": synced,
                "failed": len(failed),
                "first_failures": failed[:3],
                "seconds": round(seconds, 2),
                "records_per_second": round(synced / seconds) if seconds else 0,
                "salesforce_api_calls": calls["salesforce"],
                "netsuite_requests": calls["netsuite"],
            }
        )
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
