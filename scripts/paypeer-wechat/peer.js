#!/usr/bin/env node
// paypeer-wechat: a loopback stand-in for WeChat Pay API v3 (Native
// payments, domestic refunds, notifications, the trade bill) that
// beaconvend's tests talk to in place of api.mch.weixin.qq.com.
//
// Every protocol and cryptographic decision is delegated to the npm package
// wechatpay-axios-plugin (pinned in package-lock.json), written by people
// outside this project, so that a signing, encryption or bill-format mistake
// in beaconvend cannot be mirrored here:
//   - request signatures (Authorization: WECHATPAY2-SHA256-RSA2048) are
//     checked with Formatter.request + Rsa.verify against the merchant key;
//   - responses and notifications are signed as the platform with
//     Formatter.response + Rsa.sign;
//   - notification resources are encrypted with Aes.AesGcm (APIv3 key);
//   - nonces and timestamps come from Formatter.nonce / Formatter.timestamp;
//   - the bill's digest is Hash.sha1, and every bill is parsed back with the
//     plugin's own Formatter.castCsvBill before it is served.
//
// Business rules are WeChat Pay's, taken from its API v3 merchant
// documentation (pay.weixin.qq.com: Native payment, domestic refunds, trade
// bill; where the documentation is silent, as we read it): an order is NOTPAY until paid
// (SUCCESS), closed (CLOSED) or refunded (REFUND); a repeated prepay of the
// same out_trade_no with the same parameters returns the same code_url;
// ORDERPAID for a paid order; closing a closed order succeeds; a refund
// needs a paid order, amount.total equal to the order's total, and at most
// what is still refundable (INVALID_REQUEST otherwise); one out_refund_no
// refunds once; refunds are PROCESSING until they succeed; 404
// ORDER_NOT_EXIST / RESOURCE_NOT_EXISTS for unknown numbers; 401 SIGN_ERROR
// for a bad signature; the trade bill (bill_type ALL) has 27 columns,
// backtick-prefixed cells and a 7-column summary, and NO_STATEMENT_EXIST
// when a day has no transaction. Deviations, for tests: a bill is served at
// once for any day (WeChat Pay serves it from 10:00 the next day); a
// refund succeeds only when the control endpoint says so; the fee is 0.6 %
// of each row, rounded half up to the fen.
//
// Usage: node peer.js <dir holding node_modules> <config.json>
// config: {mchid, appid, merchantSerial, merchantPublicKey (PEM),
//          platformSerial, platformPrivateKey (PEM), apiV3Key}
// Prints "LISTEN <port>" once listening on 127.0.0.1.
//
// Control endpoints (not WeChat Pay's; under /_control):
//   POST /_control/pay {out_trade_no}          pay an order, push TRANSACTION.SUCCESS
//   POST /_control/refund-success {out_refund_no}  finish a refund, push REFUND.SUCCESS
//   POST /_control/replay {id}                 send a stored notification again, byte for byte
//   POST /_control/fault {kind, count}         next responses/notifications: tamper | stale | wrong_key | http500
//   POST /_control/platform-key {pem}          sign from now on with another key (a wrong platform key)
//   POST /_control/bill {kind, ...}            inject a bill discrepancy (see injectBill)
//   POST /_control/reset-bill                  drop injected discrepancies
'use strict';

const http = require('http');
const path = require('path');
const fs = require('fs');
const crypto = require('crypto');

const [dir, configPath] = process.argv.slice(2);
const plugin = require(path.join(dir, 'node_modules', 'wechatpay-axios-plugin'));
const { Formatter, Rsa, Aes, Hash } = plugin;

const cfg = JSON.parse(fs.readFileSync(configPath, 'utf8'));
const merchantKey = Rsa.from(cfg.merchantPublicKey, Rsa.KEY_TYPE_PUBLIC);
let platformKey = Rsa.from(cfg.platformPrivateKey, Rsa.KEY_TYPE_PRIVATE);
const apiV3Key = cfg.apiV3Key;

const orders = new Map(); // out_trade_no -> order
const refunds = new Map(); // out_refund_no -> refund
const notifications = new Map(); // id -> {url, headers, body}
const bills = new Map(); // token -> Buffer
let faults = []; // [{kind}]
let injections = []; // bill discrepancies

function log(...a) { process.stderr.write(`paypeer-wechat: ${a.join(' ')}\n`); }

// rfc3339 in +08:00, as WeChat Pay writes times.
function cst(ms) {
  const d = new Date(ms + 8 * 3600 * 1000);
  return d.toISOString().replace(/\.\d{3}Z$/, '+08:00');
}
function cstDay(ms) { return cst(ms).slice(0, 10); }
function cstDateTime(ms) { return cst(ms).slice(0, 19).replace('T', ' '); }

function fen(v) { // integer fen -> "12.34"
  const s = v < 0 ? '-' : '';
  const a = Math.abs(v);
  return `${s}${Math.floor(a / 100)}.${String(a % 100).padStart(2, '0')}`;
}
function feeOf(v) { return Math.floor((Math.abs(v) * 6 + 500) / 1000) * Math.sign(v); }

function takeFault(kinds) {
  const i = faults.findIndex((f) => kinds.includes(f.kind));
  if (i < 0) return null;
  const f = faults[i];
  f.count -= 1;
  if (f.count <= 0) faults.splice(i, 1);
  return f.kind;
}

// sign returns the Wechatpay-* headers for body, signed as the platform.
function sign(body, fault) {
  let timestamp = Formatter.timestamp();
  if (fault === 'stale') timestamp -= 6 * 60;
  const nonce = Formatter.nonce();
  const key = fault === 'wrong_key' ? crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey : platformKey;
  const signature = Rsa.sign(Formatter.response(timestamp, nonce, body), key);
  return {
    'Wechatpay-Timestamp': String(timestamp),
    'Wechatpay-Nonce': nonce,
    'Wechatpay-Signature': signature,
    'Wechatpay-Serial': cfg.platformSerial,
    'Wechatpay-Signature-Type': 'WECHATPAY2-SHA256-RSA2048',
  };
}

function reply(res, status, obj) {
  const fault = takeFault(['tamper', 'stale', 'wrong_key', 'http500']);
  if (fault === 'http500') { status = 500; obj = { code: 'SYSTEM_ERROR', message: '系统错误' }; }
  let body = obj === undefined ? '' : JSON.stringify(obj);
  const headers = sign(body, fault);
  if (fault === 'tamper' && body) body = body.replace(/"(total|refund)":(\d+)/, (m, k, v) => `"${k}":${Number(v) + 100}`).replace('NOTPAY', 'SUCCESS');
  headers['Request-ID'] = crypto.randomUUID();
  if (body) headers['Content-Type'] = 'application/json';
  res.writeHead(status, headers);
  res.end(body);
}
function fail(res, status, code, message) { reply(res, status, { code, message }); }

// verifyRequest checks the merchant's Authorization header.
function verifyRequest(req, body) {
  const auth = req.headers.authorization || '';
  const m = /^WECHATPAY2-SHA256-RSA2048 (.*)$/.exec(auth);
  if (!m) return 'Authorization is not WECHATPAY2-SHA256-RSA2048';
  const p = {};
  for (const kv of m[1].matchAll(/(\w+)="([^"]*)"/g)) p[kv[1]] = kv[2];
  if (p.mchid !== cfg.mchid) return `mchid ${p.mchid}`;
  if (p.serial_no !== cfg.merchantSerial) return `serial_no ${p.serial_no}`;
  if (Math.abs(Formatter.timestamp() - Number(p.timestamp)) > 300) return 'timestamp expired';
  const message = Formatter.request(req.method, req.url, p.timestamp, p.nonce_str, body);
  if (!Rsa.verify(message, p.signature || '', merchantKey)) return 'signature does not verify';
  return null;
}

async function notify(url, eventType, summary, originalType, resourceObj) {
  const plaintext = JSON.stringify(resourceObj);
  const nonce = Formatter.nonce(12);
  const aad = originalType;
  const ciphertext = Aes.AesGcm.encrypt(plaintext, apiV3Key, nonce, aad);
  const id = crypto.randomUUID();
  const fault = takeFault(['tamper', 'stale', 'wrong_key']);
  let body = JSON.stringify({
    id,
    create_time: cst(Date.now()),
    resource_type: 'encrypt-resource',
    event_type: eventType,
    summary,
    resource: { original_type: originalType, algorithm: 'AEAD_AES_256_GCM', ciphertext, associated_data: aad, nonce },
  });
  const headers = sign(body, fault);
  if (fault === 'tamper') body = body.replace(eventType, eventType.replace('SUCCESS', 'SUCCES5'));
  headers['Content-Type'] = 'application/json';
  notifications.set(id, { url, headers, body });
  const status = await post(url, headers, body);
  return { id, status, fault };
}

function post(url, headers, body) {
  return new Promise((resolve) => {
    const r = http.request(url, { method: 'POST', headers }, (res) => { res.resume(); res.on('end', () => resolve(res.statusCode)); });
    r.on('error', (e) => { log('notify', url, e.message); resolve(0); });
    r.end(body);
  });
}

function transaction(o) {
  const t = {
    appid: cfg.appid, mchid: cfg.mchid, out_trade_no: o.out_trade_no, trade_state: o.trade_state,
    trade_state_desc: o.trade_state, amount: { total: o.total, currency: 'CNY' },
  };
  if (o.transaction_id) {
    Object.assign(t, {
      transaction_id: o.transaction_id, trade_type: 'NATIVE', bank_type: 'OTHERS', success_time: cst(o.paid_ms),
      payer: { openid: o.openid }, attach: '',
    });
    t.amount.payer_total = o.total;
    t.amount.payer_currency = 'CNY';
  }
  return t;
}

function refundView(r) {
  const o = orders.get(r.out_trade_no);
  const v = {
    refund_id: r.refund_id, out_refund_no: r.out_refund_no, transaction_id: o.transaction_id, out_trade_no: o.out_trade_no,
    channel: 'ORIGINAL', user_received_account: '支付用户零钱', create_time: cst(r.created_ms), status: r.status,
    amount: {
      total: o.total, refund: r.refund, payer_total: o.total, payer_refund: r.refund, settlement_refund: r.refund,
      settlement_total: o.total, discount_refund: 0, currency: 'CNY',
    },
  };
  if (r.status === 'SUCCESS') v.success_time = cst(r.done_ms);
  return v;
}

function refunded(o) {
  let sum = 0;
  for (const r of refunds.values()) if (r.out_trade_no === o.out_trade_no && r.status !== 'CLOSED' && r.status !== 'ABNORMAL') sum += r.refund;
  return sum;
}

function digits(n) { let s = ''; for (let i = 0; i < n; i++) s += String(crypto.randomInt(10)); return s; }

// API routes.
async function api(req, res, url, body) {
  const verr = verifyRequest(req, body);
  if (verr) { log('refused request:', verr); return fail(res, 401, 'SIGN_ERROR', `签名错误: ${verr}`); }
  let m;
  let json = {};
  if (body) {
    try { json = JSON.parse(body); } catch (e) { return fail(res, 400, 'PARAM_ERROR', '请求体不是JSON'); }
  }
  if (req.method === 'POST' && url.pathname === '/v3/pay/transactions/native') {
    const { appid, mchid, description, out_trade_no: no, notify_url: notifyURL, amount, time_expire: expire } = json;
    if (mchid !== cfg.mchid || appid !== cfg.appid) return fail(res, 400, 'PARAM_ERROR', 'mchid或appid不匹配');
    if (!description || !no || !notifyURL || !amount || !Number.isInteger(amount.total) || amount.total < 1) return fail(res, 400, 'PARAM_ERROR', '参数错误');
    if ((amount.currency || 'CNY') !== 'CNY') return fail(res, 400, 'PARAM_ERROR', '币种错误');
    if (!/^[0-9A-Za-z_\-|*@]{6,32}$/.test(no)) return fail(res, 400, 'PARAM_ERROR', 'out_trade_no格式错误');
    const o = orders.get(no);
    if (o) {
      if (o.trade_state === 'SUCCESS' || o.trade_state === 'REFUND') return fail(res, 403, 'ORDERPAID', '该订单已支付');
      if (o.trade_state === 'CLOSED') return fail(res, 400, 'ORDER_CLOSED', '订单已关闭');
      if (o.total !== amount.total || o.description !== description) return fail(res, 400, 'INVALID_REQUEST', '商户订单号重复');
      return reply(res, 200, { code_url: o.code_url });
    }
    const code = Formatter.nonce(16);
    orders.set(no, {
      out_trade_no: no, total: amount.total, description, notify_url: notifyURL, trade_state: 'NOTPAY',
      code_url: `weixin://wxpay/bizpayurl?pr=${code}`, expire_ms: expire ? Date.parse(expire) : Date.now() + 2 * 3600 * 1000,
      created_ms: Date.now(),
    });
    return reply(res, 200, { code_url: orders.get(no).code_url });
  }
  if (req.method === 'GET' && (m = /^\/v3\/pay\/transactions\/out-trade-no\/([^/]+)$/.exec(url.pathname))) {
    if (url.searchParams.get('mchid') !== cfg.mchid) return fail(res, 400, 'PARAM_ERROR', 'mchid不匹配');
    const o = orders.get(decodeURIComponent(m[1]));
    if (!o) return fail(res, 404, 'ORDER_NOT_EXIST', '订单不存在');
    return reply(res, 200, transaction(o));
  }
  if (req.method === 'POST' && (m = /^\/v3\/pay\/transactions\/out-trade-no\/([^/]+)\/close$/.exec(url.pathname))) {
    if (json.mchid !== cfg.mchid) return fail(res, 400, 'PARAM_ERROR', 'mchid不匹配');
    const o = orders.get(decodeURIComponent(m[1]));
    if (!o) return fail(res, 404, 'ORDER_NOT_EXIST', '订单不存在');
    if (o.trade_state === 'SUCCESS' || o.trade_state === 'REFUND') return fail(res, 403, 'ORDERPAID', '该订单已支付');
    o.trade_state = 'CLOSED';
    return reply(res, 204);
  }
  if (req.method === 'POST' && url.pathname === '/v3/refund/domestic/refunds') {
    const { out_trade_no: no, out_refund_no: rno, amount, notify_url: notifyURL } = json;
    if (!no || !rno || !amount || !Number.isInteger(amount.refund) || !Number.isInteger(amount.total) || amount.refund < 1) return fail(res, 400, 'PARAM_ERROR', '参数错误');
    if (amount.currency !== 'CNY') return fail(res, 400, 'PARAM_ERROR', '币种错误');
    const o = orders.get(no);
    if (!o) return fail(res, 404, 'RESOURCE_NOT_EXISTS', '订单不存在');
    const prev = refunds.get(rno);
    if (prev) {
      if (prev.out_trade_no !== no || prev.refund !== amount.refund) return fail(res, 400, 'INVALID_REQUEST', '商户退款单号重复');
      return reply(res, 200, refundView(prev));
    }
    if (o.trade_state !== 'SUCCESS' && o.trade_state !== 'REFUND') return fail(res, 400, 'INVALID_REQUEST', '订单未支付，不能退款');
    if (amount.total !== o.total) return fail(res, 400, 'INVALID_REQUEST', '订单金额与原订单金额不一致');
    if (refunded(o) + amount.refund > o.total) return fail(res, 400, 'INVALID_REQUEST', '申请退款金额超过订单可退金额');
    const r = {
      out_refund_no: rno, out_trade_no: no, refund: amount.refund, refund_id: `50${digits(27)}`, status: 'PROCESSING',
      created_ms: Date.now(), notify_url: notifyURL || '',
    };
    refunds.set(rno, r);
    o.trade_state = 'REFUND';
    return reply(res, 200, refundView(r));
  }
  if (req.method === 'GET' && (m = /^\/v3\/refund\/domestic\/refunds\/([^/]+)$/.exec(url.pathname))) {
    const r = refunds.get(decodeURIComponent(m[1]));
    if (!r) return fail(res, 404, 'RESOURCE_NOT_EXISTS', '退款单不存在');
    return reply(res, 200, refundView(r));
  }
  if (req.method === 'GET' && url.pathname === '/v3/bill/tradebill') {
    const day = url.searchParams.get('bill_date');
    if (!/^\d{4}-\d{2}-\d{2}$/.test(day || '')) return fail(res, 400, 'PARAM_ERROR', 'bill_date格式错误');
    if ((url.searchParams.get('bill_type') || 'ALL') !== 'ALL') return fail(res, 400, 'PARAM_ERROR', '只支持ALL');
    const built = buildBill(day);
    if (!built) return fail(res, 400, 'NO_STATEMENT_EXIST', '账单文件不存在');
    const token = Formatter.nonce(24);
    bills.set(token, built.buffer);
    let hash = Hash.sha1(built.buffer);
    if (injections.some((i) => i.kind === 'bad_hash')) hash = Hash.sha1(`${hash}x`);
    return reply(res, 200, {
      hash_type: 'SHA1', hash_value: hash,
      download_url: `https://api.mch.weixin.qq.com/v3/billdownload/file?token=${token}`,
    });
  }
  if (req.method === 'GET' && url.pathname === '/v3/billdownload/file') {
    const b = bills.get(url.searchParams.get('token') || '');
    if (!b) return fail(res, 404, 'RESOURCE_NOT_EXISTS', '账单不存在');
    res.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8', 'Request-ID': crypto.randomUUID() });
    return res.end(b);
  }
  return fail(res, 404, 'NOT_FOUND', `no route ${req.method} ${url.pathname}`);
}

const HEAD = ['交易时间', '公众账号ID', '商户号', '特约商户号', '设备号', '微信订单号', '商户订单号', '用户标识',
  '交易类型', '交易状态', '付款银行', '货币种类', '应结订单金额', '代金券金额', '微信退款单号',
  '商户退款单号', '退款金额', '充值券退款金额', '退款类型', '退款状态', '商品名称', '商户数据包',
  '手续费', '费率', '订单金额', '申请退款金额', '费率备注'];
const CAPTION = ['总交易单数', '应结订单总金额', '退款总金额', '充值券退款总金额', '手续费总金额', '订单总金额', '申请退款总金额'];

function payRow(o, ms) {
  return {
    time: ms, out_trade_no: o.out_trade_no, transaction_id: o.transaction_id, openid: o.openid, state: 'SUCCESS', currency: 'CNY',
    settle: o.total, refund_id: '0', refund_no: '0', refund: 0, refund_state: '', goods: o.description, fee: feeOf(o.total), total: o.total,
  };
}
function refundRow(r) {
  const o = orders.get(r.out_trade_no);
  return {
    time: r.done_ms, out_trade_no: o.out_trade_no, transaction_id: o.transaction_id, openid: o.openid, state: 'REFUND', currency: 'CNY',
    settle: 0, refund_id: r.refund_id, refund_no: r.out_refund_no, refund: r.refund, refund_state: r.status, goods: o.description,
    fee: -feeOf(r.refund), total: 0,
  };
}

// injectBill applies the discrepancies asked for: missing_in_ours (a paid
// row for an order nobody created), missing_in_theirs {out_trade_no} (its
// rows dropped), amount {out_trade_no, delta}, status {out_trade_no |
// out_refund_no, status}, currency {out_trade_no, currency}, duplicate
// {out_trade_no}, wrong_day {out_trade_no} (its row dated the day before),
// bad_summary (a summary that does not add up), bad_hash
// (a digest that does not match the file).
function injectBill(rows, day) {
  for (const inj of injections) {
    const match = (r) => (inj.out_refund_no ? r.refund_no === inj.out_refund_no : r.out_trade_no === inj.out_trade_no && r.state === 'SUCCESS');
    switch (inj.kind) {
      case 'missing_in_ours': {
        const ms = Date.parse(`${day}T12:00:00+08:00`);
        const total = inj.total || 123;
        rows.push(payRow({ out_trade_no: inj.out_trade_no, transaction_id: inj.transaction_id, openid: inj.openid, total, description: 'unknown' }, ms));
        break;
      }
      case 'missing_in_theirs':
        for (let i = rows.length - 1; i >= 0; i--) if (rows[i].out_trade_no === inj.out_trade_no) rows.splice(i, 1);
        break;
      case 'amount':
        rows.filter(match).forEach((r) => {
          if (r.state === 'SUCCESS') { r.settle += inj.delta; r.total += inj.delta; } else r.refund += inj.delta;
        });
        break;
      case 'status':
        rows.filter(match).forEach((r) => { if (r.state === 'REFUND') r.refund_state = inj.status; else r.state = inj.status; });
        break;
      case 'currency':
        rows.filter(match).forEach((r) => { r.currency = inj.currency; });
        break;
      case 'wrong_day':
        rows.filter(match).forEach((r) => { r.time -= 24 * 3600 * 1000; });
        break;
      case 'duplicate':
        rows.filter(match).forEach((r) => rows.push({ ...r }));
        break;
      default:
    }
  }
}

function buildBill(day) {
  const rows = [];
  for (const o of orders.values()) if (o.paid_ms && cstDay(o.paid_ms) === day) rows.push(payRow(o, o.paid_ms));
  for (const r of refunds.values()) if (r.status === 'SUCCESS' && cstDay(r.done_ms) === day) rows.push(refundRow(r));
  injectBill(rows, day);
  if (rows.length === 0) return null;
  rows.sort((a, b) => a.time - b.time);
  const lines = [HEAD.join(',')];
  const sums = { settle: 0, refund: 0, fee: 0, total: 0 };
  for (const r of rows) {
    const cells = [cstDateTime(r.time), cfg.appid, cfg.mchid, '0', '', r.transaction_id, r.out_trade_no, r.openid,
      'NATIVE', r.state, 'OTHERS', r.currency, fen(r.settle), '0.00', r.refund_id, r.refund_no, fen(r.refund), '0.00',
      r.state === 'REFUND' ? 'ORIGINAL' : '', r.refund_state, r.goods, '', fen(r.fee), '0.60%', fen(r.total), fen(r.refund), ''];
    lines.push(cells.map((c) => `\`${c}`).join(','));
    sums.settle += r.settle; sums.refund += r.refund; sums.fee += r.fee; sums.total += r.total;
  }
  if (injections.some((i) => i.kind === 'bad_summary')) sums.settle += 1;
  lines.push(CAPTION.join(','));
  lines.push([String(rows.length), fen(sums.settle), fen(sums.refund), '0.00', fen(sums.fee), fen(sums.total), fen(sums.refund)].map((c) => `\`${c}`).join(','));
  const buffer = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(`${lines.join('\r\n')}\r\n`)]);
  // The plugin's own bill reader must understand what is served.
  const parsed = Formatter.castCsvBill(buffer);
  if (parsed.rows.length !== rows.length || parsed.summary['总交易单数'] !== String(rows.length)
      || parsed.rows.some((r, i) => r['商户订单号'] !== rows[i].out_trade_no || r['应结订单金额'] !== fen(rows[i].settle))) {
    throw new Error('castCsvBill does not read the bill back');
  }
  return { buffer, rows: rows.length };
}

async function control(req, res, url, body) {
  let json = {};
  try { json = body ? JSON.parse(body) : {}; } catch (e) { return send(res, 400, { error: 'body is not JSON' }); }
  switch (url.pathname) {
    case '/_control/pay': {
      const o = orders.get(json.out_trade_no);
      if (!o) return send(res, 404, { error: 'no such order' });
      if (o.trade_state !== 'NOTPAY') return send(res, 409, { error: `order is ${o.trade_state}` });
      if (Date.now() > o.expire_ms) return send(res, 409, { error: 'order expired' });
      Object.assign(o, { trade_state: 'SUCCESS', transaction_id: `42${digits(26)}`, paid_ms: json.paid_ms || Date.now(), openid: `o${Formatter.nonce(27)}` });
      const n = await notify(o.notify_url, 'TRANSACTION.SUCCESS', '支付成功', 'transaction', transaction(o));
      return send(res, 200, { ...n, transaction_id: o.transaction_id });
    }
    case '/_control/refund-success': {
      const r = refunds.get(json.out_refund_no);
      if (!r) return send(res, 404, { error: 'no such refund' });
      if (r.status !== 'PROCESSING') return send(res, 409, { error: `refund is ${r.status}` });
      Object.assign(r, { status: 'SUCCESS', done_ms: json.done_ms || Date.now() });
      const o = orders.get(r.out_trade_no);
      const resource = {
        mchid: cfg.mchid, out_trade_no: o.out_trade_no, transaction_id: o.transaction_id, out_refund_no: r.out_refund_no,
        refund_id: r.refund_id, refund_status: 'SUCCESS', success_time: cst(r.done_ms), user_received_account: '支付用户零钱',
        amount: { total: o.total, refund: r.refund, payer_total: o.total, payer_refund: r.refund },
      };
      if (!r.notify_url) return send(res, 200, { id: '' });
      const n = await notify(r.notify_url, 'REFUND.SUCCESS', '退款成功', 'refund', resource);
      return send(res, 200, n);
    }
    case '/_control/replay': {
      const n = notifications.get(json.id);
      if (!n) return send(res, 404, { error: 'no such notification' });
      const status = await post(n.url, n.headers, n.body);
      return send(res, 200, { id: json.id, status });
    }
    case '/_control/fault':
      faults.push({ kind: json.kind, count: json.count || 1 });
      return send(res, 200, {});
    case '/_control/platform-key':
      platformKey = Rsa.from(json.pem, Rsa.KEY_TYPE_PRIVATE);
      return send(res, 200, {});
    case '/_control/bill':
      if (json.kind === 'missing_in_ours') {
        // The row is fixed once, when injected: every download of the
        // bill lists the same transaction, as WeChat Pay's bill does.
        json.out_trade_no = json.out_trade_no || `x${Formatter.nonce(20)}`;
        json.transaction_id = `42${digits(26)}`;
        json.openid = `o${Formatter.nonce(27)}`;
      }
      injections.push(json);
      return send(res, 200, {});
    case '/_control/reset-bill':
      injections = [];
      faults = [];
      return send(res, 200, {});
    default:
      return send(res, 404, { error: 'no such control' });
  }
}

function send(res, status, obj) {
  res.writeHead(status, { 'Content-Type': 'application/json' });
  res.end(JSON.stringify(obj));
}

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', async () => {
    const body = Buffer.concat(chunks).toString('utf8');
    const url = new URL(req.url, 'http://127.0.0.1');
    try {
      if (url.pathname.startsWith('/_control/')) await control(req, res, url, body);
      else await api(req, res, url, body);
    } catch (e) {
      log('error', e.stack);
      if (!res.headersSent) send(res, 500, { code: 'SYSTEM_ERROR', message: String(e.message) });
    }
  });
});
server.listen(0, '127.0.0.1', () => { process.stdout.write(`LISTEN ${server.address().port}\n`); });
process.stdin.on('end', () => process.exit(0)); // the test closes stdin to stop the peer
process.stdin.resume();
