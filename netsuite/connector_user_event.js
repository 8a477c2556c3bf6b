/**
 * Sends a signed change event to the connector after each save of a customer,
 * contact or vendor. The event only names the record; the connector reads the
 * record itself over SuiteQL, so nothing else leaves NetSuite here.
 *
 * Setup (see README.md, "Change events"):
 *   1. Setup > Company > API Secrets: add a secret with ID `custsecret_connector_webhook`
 *      holding the connector's `webhook_secret`, restricted to this script.
 *   2. Upload this file and create a User Event script record from it, with a
 *      parameter `custscript_connector_url` (Free-Form Text): the connector's
 *      event URL, e.g. https://connector.example.com/netsuite/events
 *   3. Deploy it on Customer, Contact and Vendor, event types Create, Edit,
 *      Inline Edit and Delete, status Released.
 *
 * @NApiVersion 2.1
 * @NScriptType UserEventScript
 * @NModuleScope SameAccount
 */
define(['N/https', 'N/crypto', 'N/encode', 'N/runtime', 'N/log'], (https, crypto, encode, runtime, log) => {
  const SECRET_ID = 'custsecret_connector_webhook';

  const sign = (timestamp, body) => {
    const key = crypto.createSecretKey({ secret: SECRET_ID, encoding: encode.Encoding.UTF_8 });
    const hmac = crypto.createHmac({ algorithm: crypto.HashAlg.SHA256, key });
    hmac.update({ input: `${timestamp}.${body}`, inputEncoding: encode.Encoding.UTF_8 });
    return hmac.digest({ outputEncoding: encode.Encoding.HEX });
  };

  const afterSubmit = (context) => {
    const url = runtime.getCurrentScript().getParameter({ name: 'custscript_connector_url' });
    if (!url) {
      log.error({ title: 'connector event not sent', details: 'custscript_connector_url is not set on the deployment' });
      return;
    }
    const record = context.type === context.UserEventType.DELETE ? context.oldRecord : context.newRecord;
    // `sentAt` (ms) makes each delivery's signature its own: the connector
    // accepts a signature once, so two saves in one second must differ.
    const body = JSON.stringify({ recordType: record.type, id: String(record.id), type: context.type, sentAt: Date.now() });
    const timestamp = Math.floor(Date.now() / 1000);
    try {
      const response = https.post({
        url,
        body,
        headers: {
          'Content-Type': 'application/json',
          'X-Connector-Signature': `t=${timestamp},v1=${sign(timestamp, body)}`,
        },
      });
      // 202 queued; 200 the same event was taken already.
      if (response.code !== 202 && response.code !== 200) {
        log.error({ title: `connector answered ${response.code}`, details: response.body });
      }
    } catch (e) {
      // Never block the user's save: the connector's scheduled sweep catches up.
      log.error({ title: 'connector event not delivered', details: e.message });
    }
  };

  return { afterSubmit };
});
