#!/usr/bin/env node
// Loopback Alipay peer for the tests of cloud/payments/alipay.
//
// Every protocol and cryptographic decision is delegated to Alipay's own
// Node SDK, alipay-sdk@4.14.0 (pinned in package-lock.json):
//   - a request from the cloud is accepted only when AlipaySdk.checkNotifySignV2
//     (configured with the application's public key) accepts its RSA2
//     signature over the form parameters;
//   - a response is signed over the raw text of its <method>_response value
//     with the SDK's RSA2 signer, and the SDK's own response check
//     (checkResponseSign, configured as a merchant with Alipay's public key)
//     must accept it before it is sent;
//   - an asynchronous notification is signed the same way over its sorted
//     parameters, and the SDK's notification self-check (checkNotifySign)
//     must accept it before it is POSTed.
// The bill is a zip (adm-zip@0.5.16) of GBK CSVs encoded by iconv-lite@0.6.3.
//
// The business rules are not ours: they follow Alipay's published
// documentation (opendocs.alipay.com) of alipay.trade.precreate, .query,
// .close, .cancel, .refund, .fastpay.refund.query,
// alipay.data.dataservice.bill.downloadurl.query and the asynchronous
// notification (trade_status_sync):
//   - a precreated order is not a trade until the buyer scans the QR code:
//     query and close answer ACQ.TRADE_NOT_EXIST until then; the code
//     cannot be paid after the order's time_expire;
//   - WAIT_BUYER_PAY → TRADE_SUCCESS (paid) or TRADE_CLOSED (closed unpaid,
//     or paid and then refunded in full); a closed trade cannot be paid;
//   - a precreate repeated with the same out_trade_no and the same amount
//     returns the same qr_code; another amount is ACQ.CONTEXT_INCONSISTENT;
//     a paid or closed out_trade_no is ACQ.TRADE_HAS_SUCCESS /
//     ACQ.TRADE_HAS_CLOSE;
//   - closing a paid trade is ACQ.TRADE_STATUS_ERROR; cancel closes an unpaid
//     trade (action close) and refunds a paid one in full (action refund);
//   - a refund needs a paid trade (ACQ.TRADE_STATUS_ERROR otherwise), at most
//     what is still refundable (ACQ.REFUND_AMT_NOT_EQUAL_TOTAL); the same
//     out_request_no repeated returns the first result with fund_change N;
//     a refund in full closes the trade;
//   - refund query answers refund_status REFUND_SUCCESS, or no refund_status
//     when no refund exists under that out_request_no;
//   - the notification of a refund carries out_biz_no (the out_request_no),
//     refund_fee (the total refunded so far) and gmt_refund;
//   - the trade bill (业务明细) has 25 columns, summary lines
//     "#交易合计：N笔，商家实收：￥X元…" and "#退款合计：…", and a service fee
//     (服务费) column, negative when charged and positive when returned. The
//     fee rate here is 0.6 %, rounded half up to the fen. The domestic
//     trade bill has no currency column (everything is CNY), so a currency
//     mismatch cannot be injected into it: the channel reports the
//     statement's currency as CNY and the reconciler compares it with each
//     record's currency.
// A request signed with an unknown key is answered 40002
// isv.invalid-signature without a signature, as Alipay does.
//
// Usage: node peer.js <config.json>; the config names appId, pid, the
// application's public key file and Alipay's private key file. The peer
// prints {"url":"http://127.0.0.1:PORT"} and serves until stdin closes.
//
// Control endpoint (tests only), POST /control with a JSON body {op, ...}:
//   scan {out_trade_no}                 the buyer scanned: the trade exists, WAIT_BUYER_PAY
//   pay {out_trade_no, buyer_id?}       the buyer paid; the notification is POSTed
//   replay {out_trade_no}               POST the order's last notification again
//   tamper {out_trade_no, field, value} POST it again with one field changed, signature kept
//   alipay_key {wrong}                  sign with a key that is not Alipay's (true) or Alipay's (false)
//   forge_cert {on}                     sign with the rogue key, name an alipay_cert_sn in every
//                                       answer, and serve the rogue certificate to
//                                       alipay.open.app.alipaycert.download
//   fail {method, code, sub_code, count?}  the next count (1) calls of method answer this error
//   bill_inject {day, kind, out_trade_no?}  kinds: missing_in_ours (a paid row for an order
//                                       the cloud never made), missing_in_theirs (the order's row
//                                       left out), amount (+0.01), status (a paid row for an unpaid
//                                       order), duplicate (the row twice), summary (交易合计 off by 1.00)
//   clock {at}                          the peer's time is at (ISO 8601) from now on; null: real time
//   order {out_trade_no}                the peer's record of an order (or null)
//   requests {}                         how many gateway requests were accepted and refused
"use strict";

const fs = require("fs");
const http = require("http");
const path = require("path");
const crypto = require("crypto");
const { AlipaySdk } = require("alipay-sdk");
// The SDK's RSA2 signer; its package exports do not list util.js, so it is
// loaded by path from the installed package.
const sdkUtil = require(path.join(path.dirname(require.resolve("alipay-sdk")), "util.js"));
const iconv = require("iconv-lite");
const AdmZip = require("adm-zip");

const cfg = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const appPublicKey = fs.readFileSync(cfg.appPublicKeyFile, "utf8");
const alipayPrivateKey = fs.readFileSync(cfg.alipayPrivateKeyFile, "utf8");
// The rogue key signs as if it were Alipay's; the test may give it with a
// certificate (rogueKeyFile, rogueCertFile) for the forged-certificate case.
const roguePrivateKey = cfg.rogueKeyFile ? fs.readFileSync(cfg.rogueKeyFile, "utf8")
	: crypto.generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey.export({ type: "pkcs8", format: "pem" });
const roguePublicKey = crypto.createPublicKey(roguePrivateKey).export({ type: "spki", format: "pem" });
const rogueCert = cfg.rogueCertFile ? fs.readFileSync(cfg.rogueCertFile, "utf8") : "";
let forgeCertSN = false; // answers name an alipay_cert_sn and are signed by the rogue key
const alipayPublicKey = crypto.createPublicKey(alipayPrivateKey).export({ type: "spki", format: "pem" });

// The application's view: verifies the cloud's request signatures.
const appView = new AlipaySdk({ appId: cfg.appId, privateKey: alipayPrivateKey, keyType: "PKCS8", alipayPublicKey: appPublicKey });
// A merchant's view of each Alipay key: checks what the peer signs.
const merchantView = (pub) => new AlipaySdk({ appId: cfg.appId, privateKey: alipayPrivateKey, keyType: "PKCS8", alipayPublicKey: pub });
const keys = {
	good: { priv: alipayPrivateKey, check: merchantView(alipayPublicKey) },
	rogue: { priv: roguePrivateKey, check: merchantView(roguePublicKey) },
};
let signing = keys.good;

const orders = new Map(); // out_trade_no → order
const failNext = new Map(); // method → {code, sub_code}
const injections = []; // {day, kind, out_trade_no}
const counts = { accepted: 0, refused: 0 };
let seq = 0;

// ---- money: integer fen, never a float ----
function parseYuan(s) {
	if (typeof s !== "string" || !/^\d{1,9}(\.\d{1,2})?$/.test(s)) return null;
	const [w, f = ""] = s.split(".");
	return Number(w) * 100 + Number((f + "00").slice(0, 2));
}
function yuan(fen) {
	const neg = fen < 0;
	const a = Math.abs(fen);
	return (neg ? "-" : "") + Math.floor(a / 100) + "." + String(a % 100).padStart(2, "0");
}
function fee(fen) { return Math.floor((fen * 6 + 500) / 1000); } // 0.6 %, half up

// ---- time in Asia/Shanghai (UTC+8, no daylight saving) ----
function cst(d) {
	const t = new Date(d.getTime() + 8 * 3600e3).toISOString();
	return t.slice(0, 10) + " " + t.slice(11, 19);
}
let clock = null; // a fixed time set by the control op clock
function now() { return clock ? new Date(clock.getTime()) : new Date(); }

// ---- signing, delegated to alipay-sdk ----
function signResponse(key, obj) {
	const inner = JSON.stringify(obj);
	const sign = sdkUtil.signatureV3(inner, signing.priv);
	const sn = forgeCertSN ? `"alipay_cert_sn":"0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f",` : "";
	const body = `{"${key}":${inner},${sn}"sign":"${sign}"}`;
	signing.check.checkResponseSign(body, key, sign); // throws when the SDK disagrees
	return body;
}
function signNotification(params) {
	const content = Object.keys(params).filter((k) => k !== "sign" && k !== "sign_type" && params[k] !== "")
		.sort().map((k) => `${k}=${params[k]}`).join("&");
	const signed = { ...params, sign: sdkUtil.signatureV3(content, signing.priv) };
	if (!signing.check.checkNotifySign(signed, true)) throw new Error("alipay-sdk refused the notification the peer signed");
	return signed;
}

// ---- HTTP helpers ----
function readBody(req) {
	return new Promise((resolve, reject) => {
		const chunks = [];
		let n = 0;
		req.on("data", (c) => { n += c.length; if (n > 1 << 20) { reject(new Error("body too large")); req.destroy(); } else chunks.push(c); });
		req.on("end", () => resolve(Buffer.concat(chunks)));
		req.on("error", reject);
	});
}
function send(res, status, type, body) {
	res.writeHead(status, { "content-type": type });
	res.end(body);
}

async function postNotification(o, params) {
	o.notifications.push(params);
	if (!o.notify_url) return { status: 0, body: "no notify_url" };
	const body = new URLSearchParams(params).toString();
	const r = await fetch(o.notify_url, { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded; charset=utf-8" }, body });
	return { status: r.status, body: await r.text() };
}

function notification(o, extra) {
	const t = now();
	const p = {
		notify_time: cst(t), notify_type: "trade_status_sync", notify_id: crypto.randomBytes(16).toString("hex"),
		app_id: cfg.appId, charset: "utf-8", version: "1.0", sign_type: "RSA2",
		trade_no: o.trade_no, out_trade_no: o.out_trade_no, trade_status: o.status,
		total_amount: yuan(o.total), receipt_amount: yuan(o.total), buyer_pay_amount: yuan(o.total),
		seller_id: cfg.pid, buyer_id: o.buyer_id || "", gmt_create: cst(o.created), gmt_payment: o.paid ? cst(o.paid) : "",
		subject: o.subject,
		...extra,
	};
	for (const k of Object.keys(p)) if (p[k] === "") delete p[k];
	return signNotification(p);
}

// ---- the gateway ----
const bizErr = (code, sub_code, sub_msg) => ({ code, msg: code === "40004" ? "Business Failed" : code === "40002" ? "Invalid Arguments" : "Service Currently Unavailable", sub_code, sub_msg });
const ok = (o) => ({ code: "10000", msg: "Success", ...o });

function precreate(b, form) {
	const total = parseYuan(b.total_amount);
	if (!b.out_trade_no || total === null || total < 1 || total > 10000000000 || !b.subject) return bizErr("40002", "isv.invalid-parameter", "out_trade_no, total_amount or subject invalid");
	const o = orders.get(b.out_trade_no);
	if (o) {
		if (o.status === "TRADE_SUCCESS" || o.status === "TRADE_FINISHED") return bizErr("40004", "ACQ.TRADE_HAS_SUCCESS", "trade already paid");
		if (o.status === "TRADE_CLOSED") return bizErr("40004", "ACQ.TRADE_HAS_CLOSE", "trade closed");
		if (o.total !== total) return bizErr("40004", "ACQ.CONTEXT_INCONSISTENT", "trade details differ from the first request");
		return ok({ out_trade_no: o.out_trade_no, qr_code: o.qr_code });
	}
	const n = ++seq;
	const created = now();
	orders.set(b.out_trade_no, {
		out_trade_no: b.out_trade_no, subject: b.subject, total, refunded: 0, refunds: new Map(), notifications: [],
		trade_no: cst(created).slice(0, 10).replace(/-/g, "") + "22001" + String(4000000000 + n).padStart(17, "0"),
		qr_code: "https://qr.alipay.com/bax0" + crypto.randomBytes(10).toString("hex"),
		status: "WAIT_BUYER_PAY", scanned: false, created, paid: null, time_expire: b.time_expire || "",
		notify_url: form.get("notify_url") || "",
	});
	return ok({ out_trade_no: b.out_trade_no, qr_code: orders.get(b.out_trade_no).qr_code });
}

function find(b) {
	if (b.out_trade_no) return orders.get(b.out_trade_no);
	for (const o of orders.values()) if (o.trade_no === b.trade_no) return o;
	return undefined;
}
const notExist = () => bizErr("40004", "ACQ.TRADE_NOT_EXIST", "trade does not exist");

function query(b) {
	const o = find(b);
	if (!o || !o.scanned) return notExist();
	return ok({
		trade_no: o.trade_no, out_trade_no: o.out_trade_no, trade_status: o.status, total_amount: yuan(o.total),
		buyer_user_id: o.buyer_id || undefined, buyer_pay_amount: o.paid ? yuan(o.total) : "0.00",
		receipt_amount: o.paid ? yuan(o.total) : "0.00", send_pay_date: o.paid ? cst(o.paid) : undefined,
	});
}

function close(b) {
	const o = find(b);
	if (!o || !o.scanned) return notExist();
	if (o.status !== "WAIT_BUYER_PAY") return o.status === "TRADE_CLOSED" && !o.paid ? ok({ trade_no: o.trade_no, out_trade_no: o.out_trade_no }) : bizErr("40004", "ACQ.TRADE_STATUS_ERROR", "trade status is " + o.status);
	o.status = "TRADE_CLOSED";
	return ok({ trade_no: o.trade_no, out_trade_no: o.out_trade_no });
}

function cancel(b) {
	const o = find(b);
	if (!o) return ok({ out_trade_no: b.out_trade_no || "", retry_flag: "N" });
	if (o.status === "WAIT_BUYER_PAY") {
		o.status = "TRADE_CLOSED";
		o.scanned = true;
		return ok({ trade_no: o.trade_no, out_trade_no: o.out_trade_no, retry_flag: "N", action: "close" });
	}
	if (o.status === "TRADE_SUCCESS") {
		refundNow(o, o.out_trade_no + "-cancel", o.total - o.refunded, "cancel");
		return ok({ trade_no: o.trade_no, out_trade_no: o.out_trade_no, retry_flag: "N", action: "refund" });
	}
	return ok({ trade_no: o.trade_no, out_trade_no: o.out_trade_no, retry_flag: "N", action: o.paid ? "refund" : "close" });
}

function refundNow(o, reqNo, amount, reason) {
	const r = { out_request_no: reqNo, amount, at: now(), reason };
	o.refunds.set(reqNo, r);
	o.refunded += amount;
	if (o.refunded === o.total) o.status = "TRADE_CLOSED";
	return r;
}

function refund(b) {
	const o = find(b);
	if (!o || !o.scanned) return notExist();
	const reqNo = b.out_request_no || o.out_trade_no;
	const amount = parseYuan(b.refund_amount);
	if (amount === null || amount < 1) return bizErr("40002", "isv.invalid-parameter", "refund_amount invalid");
	const prev = o.refunds.get(reqNo);
	if (prev) {
		return ok({ trade_no: o.trade_no, out_trade_no: o.out_trade_no, buyer_user_id: o.buyer_id, fund_change: "N", refund_fee: yuan(o.refunded) });
	}
	if (!o.paid || (o.status !== "TRADE_SUCCESS")) return bizErr("40004", "ACQ.TRADE_STATUS_ERROR", "trade status is " + o.status);
	if (amount > o.total - o.refunded) return bizErr("40004", "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", "refund amount exceeds what is refundable");
	const r = refundNow(o, reqNo, amount, b.refund_reason || "");
	setImmediate(() => postNotification(o, notification(o, { out_biz_no: reqNo, refund_fee: yuan(o.refunded), gmt_refund: cst(r.at) + ".000" })).catch((e) => console.error("refund notify:", e.message)));
	return ok({ trade_no: o.trade_no, out_trade_no: o.out_trade_no, buyer_user_id: o.buyer_id, fund_change: "Y", refund_fee: yuan(o.refunded), gmt_refund_pay: cst(r.at) });
}

function refundQuery(b) {
	const o = find(b);
	if (!o || !o.scanned) return notExist();
	const r = o.refunds.get(b.out_request_no || o.out_trade_no);
	if (!r) return ok({ trade_no: o.trade_no, out_trade_no: o.out_trade_no, out_request_no: b.out_request_no });
	return ok({
		trade_no: o.trade_no, out_trade_no: o.out_trade_no, out_request_no: r.out_request_no, total_amount: yuan(o.total),
		refund_amount: yuan(r.amount), refund_status: "REFUND_SUCCESS", gmt_refund_pay: cst(r.at),
	});
}

let port = 0;
function billURL(b) {
	if (!/^\d{4}-\d{2}-\d{2}$/.test(b.bill_date || "") || b.bill_type !== "trade") return bizErr("40004", "isp.bill_not_exist", "bill does not exist");
	return ok({ bill_download_url: `http://127.0.0.1:${port}/downloadBillFile.resource?bizType=trade&fileType=csv.zip&bizDates=${b.bill_date.replace(/-/g, "")}&fileId=${crypto.randomBytes(6).toString("hex")}` });
}

const methods = {
	"alipay.trade.precreate": precreate, "alipay.trade.query": query, "alipay.trade.close": close,
	"alipay.trade.cancel": cancel, "alipay.trade.refund": refund, "alipay.trade.fastpay.refund.query": refundQuery,
	"alipay.data.dataservice.bill.downloadurl.query": billURL,
};

async function gateway(req, res) {
	const form = new URLSearchParams((await readBody(req)).toString("utf8"));
	const method = form.get("method") || "";
	const key = method.replace(/\./g, "_") + "_response";
	const params = Object.fromEntries(form.entries());
	const unsigned = (obj) => { counts.refused++; send(res, 200, "application/json;charset=utf-8", JSON.stringify({ [key]: obj })); };
	if (params.app_id !== cfg.appId) return unsigned(bizErr("40002", "isv.invalid-app-id", "app_id unknown"));
	if (params.sign_type !== "RSA2") return unsigned(bizErr("40002", "isv.invalid-signature-type", "sign_type must be RSA2"));
	if (!appView.checkNotifySignV2(params)) return unsigned(bizErr("40002", "isv.invalid-signature", "the request signature does not verify with the application's public key"));
	if (method === "alipay.open.app.alipaycert.download" && rogueCert) {
		// Served unsigned, as Alipay serves it: the certificate is the answer.
		counts.accepted++;
		return send(res, 200, "application/json;charset=utf-8", JSON.stringify({ [key]: ok({ alipay_cert_content: Buffer.from(rogueCert).toString("base64") }) }));
	}
	const fn = methods[method];
	if (!fn) return unsigned(bizErr("40002", "isv.invalid-method", "unknown method " + method));
	let biz;
	try { biz = JSON.parse(params.biz_content || "{}"); } catch { return unsigned(bizErr("40002", "isv.invalid-parameter", "biz_content is not JSON")); }
	counts.accepted++;
	const injected = failNext.get(method);
	let out;
	if (injected) { if (--injected.count <= 0) failNext.delete(method); out = bizErr(injected.code || "40004", injected.sub_code, "injected"); } else out = fn(biz, form);
	send(res, 200, "application/json;charset=utf-8", signResponse(key, JSON.parse(JSON.stringify(out))));
}

// ---- the bill ----
const header = ["支付宝交易号", "商户订单号", "业务类型", "商品名称", "创建时间", "完成时间", "门店编号", "门店名称", "操作员", "终端号", "对方账户",
	"订单金额（元）", "商家实收（元）", "支付宝红包（元）", "集分宝（元）", "支付宝优惠（元）", "商家优惠（元）", "券核销金额（元）", "券名称",
	"商家红包消费金额（元）", "卡消费金额（元）", "退款批次号/请求号", "服务费（元）", "分润（元）", "备注"];

function payRow(o, total, kind) {
	return [o.trade_no, o.out_trade_no, kind || "交易", o.subject, cst(o.created), cst(o.paid || o.created), "", "", "", "", "buy***@example.com",
		yuan(total), yuan(total), "0.00", "0.00", "0.00", "0.00", "0.00", "", "0.00", "0.00", "", yuan(-fee(total)), "0.00", ""];
}
function refundRow(o, r) {
	return [o.trade_no, o.out_trade_no, "退款", o.subject, cst(o.created), cst(r.at), "", "", "", "", "buy***@example.com",
		yuan(o.total), yuan(-r.amount), "0.00", "0.00", "0.00", "0.00", "0.00", "", "0.00", "0.00", r.out_request_no, yuan(fee(r.amount)), "0.00", ""];
}

function bill(day) {
	const on = (d) => d && cst(d).slice(0, 10) === day;
	const inj = injections.filter((i) => i.day === day);
	const has = (kind, no) => inj.some((i) => i.kind === kind && i.out_trade_no === no);
	const rows = [];
	for (const o of orders.values()) {
		if (on(o.paid) && !has("missing_in_theirs", o.out_trade_no)) {
			const row = payRow(o, has("amount", o.out_trade_no) ? o.total + 1 : o.total);
			rows.push(row);
			if (has("duplicate", o.out_trade_no)) rows.push(row.slice());
		}
		if (!o.paid && has("status", o.out_trade_no)) rows.push(payRow({ ...o, paid: o.created }, o.total));
		for (const r of o.refunds.values()) if (on(r.at)) rows.push(refundRow(o, r));
	}
	for (const i of inj) {
		if (i.kind !== "missing_in_ours") continue;
		const at = new Date(Date.parse(day + "T10:00:00+08:00"));
		const o = { trade_no: i.trade_no, out_trade_no: i.out_trade_no, subject: "unknown order", created: at, paid: at };
		rows.push(payRow(o, 1234));
	}
	let nPay = 0, nRef = 0, sumPay = 0, sumRef = 0;
	for (const r of rows) {
		const got = parseYuan(r[12].replace("-", "")) * (r[12].startsWith("-") ? -1 : 1);
		if (r[2] === "交易") { nPay++; sumPay += got; } else { nRef++; sumRef += got; }
	}
	if (inj.some((i) => i.kind === "summary")) sumPay += 100;
	const d = day.replace(/-/g, "");
	const lines = [
		"#支付宝业务明细查询", `#账号：[${cfg.pid}0156]`,
		`#起始日期：[${day.slice(0, 4)}年${day.slice(5, 7)}月${day.slice(8, 10)}日 00:00:00]   终止日期：[${day.slice(0, 4)}年${day.slice(5, 7)}月${day.slice(8, 10)}日 23:59:59]`,
		"#-----------------------------------------业务明细列表----------------------------------------",
		header.join(","),
		...rows.map((r) => r.map((c) => c + "\t").join(",")),
		"#-----------------------------------------业务明细列表结束------------------------------------",
		`#交易合计：${nPay}笔，商家实收：￥${yuan(sumPay)}元，商家优惠：￥0.00元`,
		`#退款合计：${nRef}笔，商家实收：￥${yuan(sumRef)}元，商家优惠：￥0.00元`,
		`#导出时间：[${cst(now()).replace(/^(\d{4})-(\d{2})-(\d{2})/, "$1年$2月$3日")}]`,
	];
	const summary = [
		"#支付宝业务汇总查询", `#账号：[${cfg.pid}0156]`,
		"#-----------------------------------------业务汇总列表----------------------------------------",
		"门店编号,门店名称,交易订单总笔数,退款订单总笔数,订单金额（元）,商家实收（元）,支付宝优惠（元）,商家优惠（元）,卡消费金额（元）,服务费（元）,分润（元）,实收净额（元）",
		`合计,,${nPay},${nRef},${yuan(sumPay)},${yuan(sumPay + sumRef)},0.00,0.00,0.00,0.00,0.00,${yuan(sumPay + sumRef)}`,
		"#-----------------------------------------业务汇总列表结束------------------------------------",
	];
	const zip = new AdmZip();
	zip.addFile(`${cfg.pid}0156_${d}_业务明细.csv`, iconv.encode(lines.join("\r\n") + "\r\n", "gbk"));
	zip.addFile(`${cfg.pid}0156_${d}_业务明细(汇总).csv`, iconv.encode(summary.join("\r\n") + "\r\n", "gbk"));
	return zip.toBuffer();
}

// ---- control ----
async function control(req, res) {
	const c = JSON.parse((await readBody(req)).toString("utf8") || "{}");
	const o = c.out_trade_no ? orders.get(c.out_trade_no) : undefined;
	const need = () => { if (!o) throw new Error("no order " + c.out_trade_no); };
	let out = {};
	switch (c.op) {
		case "scan": need(); if (o.status === "WAIT_BUYER_PAY") o.scanned = true; break;
		case "pay":
			need();
			if (o.status !== "WAIT_BUYER_PAY") throw new Error("order is " + o.status);
			if (o.time_expire && now() >= new Date(o.time_expire.replace(" ", "T") + "+08:00")) throw new Error("order expired at " + o.time_expire);
			o.scanned = true; o.status = "TRADE_SUCCESS"; o.paid = c.at ? new Date(c.at) : now(); o.buyer_id = c.buyer_id || "2088102177846880";
			out = { trade_no: o.trade_no, notify: await postNotification(o, notification(o, {})) };
			break;
		case "replay": {
			need();
			const last = o.notifications[o.notifications.length - 1];
			out = { notify: await postNotification(o, last), notification: last };
			break;
		}
		case "tamper": {
			need();
			const last = { ...o.notifications[o.notifications.length - 1], [c.field]: c.value };
			out = { notify: await postNotification(o, last) };
			break;
		}
		case "clock": clock = c.at ? new Date(c.at) : null; break;
		case "alipay_key": signing = c.wrong ? keys.rogue : keys.good; break;
		case "forge_cert": forgeCertSN = !!c.on; signing = c.on ? keys.rogue : keys.good; break;
		case "fail": failNext.set(c.method, { code: c.code, sub_code: c.sub_code, count: c.count || 1 }); break;
		case "bill_inject": {
			// A row made up for missing_in_ours is fixed once, when
			// injected: every download lists the same trade, as Alipay's does.
			const inj = { day: c.day, kind: c.kind, out_trade_no: c.out_trade_no };
			if (c.kind === "missing_in_ours") {
				inj.out_trade_no = inj.out_trade_no || "X" + crypto.randomBytes(8).toString("hex");
				inj.trade_no = c.day.replace(/-/g, "") + "22001" + String(5000000000 + ++seq).padStart(17, "0");
			}
			injections.push(inj);
			break;
		}
		case "order":
			out = o ? { status: o.status, scanned: o.scanned, total: o.total, refunded: o.refunded, trade_no: o.trade_no, time_expire: o.time_expire, notify_url: o.notify_url, notifications: o.notifications.length } : null;
			break;
		case "requests": out = counts; break;
		default: throw new Error("unknown op " + c.op);
	}
	send(res, 200, "application/json", JSON.stringify(out));
}

const server = http.createServer((req, res) => {
	const u = new URL(req.url, "http://x");
	let p;
	if (req.method === "POST" && u.pathname === "/gateway.do") p = gateway(req, res);
	else if (req.method === "POST" && u.pathname === "/control") p = control(req, res);
	else if (req.method === "GET" && u.pathname === "/downloadBillFile.resource") {
		const b = u.searchParams.get("bizDates") || "";
		p = Promise.resolve(send(res, 200, "application/zip", bill(`${b.slice(0, 4)}-${b.slice(4, 6)}-${b.slice(6, 8)}`)));
	} else p = Promise.resolve(send(res, 404, "text/plain", "not found"));
	p.catch((e) => { console.error("peer:", e.stack || e); if (!res.headersSent) send(res, 500, "text/plain", String(e.message || e)); });
});
server.listen(0, "127.0.0.1", () => {
	port = server.address().port;
	console.log(JSON.stringify({ url: `http://127.0.0.1:${port}` }));
});
process.stdin.on("end", () => process.exit(0));
process.stdin.resume();
