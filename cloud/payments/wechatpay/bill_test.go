package wechatpay_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"beaconvend/cloud/payments"
	"beaconvend/cloud/payments/wechatpay"
)

const (
	billHead    = "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注"
	billCaption = "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额"
	billPay     = "`2026-12-06 10:58:11,`wxd678efh567hg6787,`1900009191,`0,`,`4200000001202612061234567890,`T0001aaaa,`oUpF8uMuAJO_M2pxb1Q9zNjWeS6o,`NATIVE,`SUCCESS,`OTHERS,`CNY,`12.34,`0.00,`0,`0,`0.00,`0.00,`,`,`top-up,`,`0.07000,`0.60%,`12.34,`0.00,`"
	billPay2    = "`2026-12-06 11:00:00,`wxd678efh567hg6787,`1900009191,`0,`,`4200000001202612061234567891,`T0002bbbb,`oUpF8uMuAJO_M2pxb1Q9zNjWeS6o,`NATIVE,`SUCCESS,`OTHERS,`CNY,`0.10,`0.00,`0,`0,`0.00,`0.00,`,`,`top-up,`,`0.00,`0.60%,`0.10,`0.00,`"
	billRefund  = "`2026-12-06 12:00:00,`wxd678efh567hg6787,`1900009191,`0,`,`4200000001202612061234567890,`T0001aaaa,`oUpF8uMuAJO_M2pxb1Q9zNjWeS6o,`NATIVE,`REFUND,`OTHERS,`CNY,`0.00,`0.00,`50300000012026120600000000001,`R0001cccc,`2.00,`0.00,`ORIGINAL,`SUCCESS,`top-up,`,`-0.01,`0.60%,`0.00,`2.00,`"
	billSum     = "`3,`12.44,`2.00,`0.00,`0.06,`12.44,`2.00"
)

func bill(lines ...string) []byte {
	return []byte("\xef\xbb\xbf" + strings.Join(lines, "\r\n") + "\r\n")
}

func TestParseTradeBill(t *testing.T) {
	st, err := wechatpay.ParseTradeBill(bill(billHead, billPay, billPay2, billRefund, billCaption, billSum), "1900009191")
	if err != nil {
		t.Fatalf("ParseTradeBill = %v", err)
	}
	if len(st.Rows) != 3 || st.Payments != 1244 || st.Refunds != 200 || st.Fees != 6 || st.Currency != "CNY" {
		t.Fatalf("statement = %+v", st)
	}
	p := st.Rows[0]
	at := time.Date(2026, 12, 6, 2, 58, 11, 0, time.UTC)
	if p.Kind != payments.RowPayment || p.OrderNo != "T0001aaaa" || p.ProviderTxID != "4200000001202612061234567890" ||
		p.Amount != cny(1234) || p.Fee != 7 || p.Status != "SUCCESS" || !p.At.Equal(at) {
		t.Errorf("payment row = %+v", p)
	}
	r := st.Rows[2]
	if r.Kind != payments.RowRefund || r.OrderNo != "T0001aaaa" || r.RefundNo != "R0001cccc" || r.ProviderRefundID != "50300000012026120600000000001" ||
		r.Amount != cny(200) || r.Fee != -1 || r.Status != "SUCCESS" {
		t.Errorf("refund row = %+v", r)
	}
	// Without a byte-order mark and with LF line ends it reads the same.
	st2, err := wechatpay.ParseTradeBill([]byte(strings.Join([]string{billHead, billPay, billPay2, billRefund, billCaption, billSum}, "\n")), "")
	if err != nil || len(st2.Rows) != 3 || st2.Payments != st.Payments {
		t.Errorf("LF bill = %+v, %v", st2, err)
	}
}

func TestParseTradeBillRefuses(t *testing.T) {
	sub := func(line, old, new string) string {
		if !strings.Contains(line, old) {
			t.Fatalf("%q not in %q", old, line)
		}
		return strings.Replace(line, old, new, 1)
	}
	for _, tc := range []struct {
		name  string
		lines []string
		mchid string
		want  string
	}{
		{"empty", nil, "", "lines"},
		{"no summary", []string{billHead, billPay}, "", "caption"},
		{"26 columns", []string{strings.TrimSuffix(billHead, ",费率备注"), billPay, billCaption, "`1,`12.34,`0.00,`0.00,`0.07,`12.34,`0.00"}, "", "header has 26"},
		{"renamed column", []string{sub(billHead, "手续费", "服务费"), billPay, billCaption, "`1,`12.34,`0.00,`0.00,`0.07,`12.34,`0.00"}, "", "column 23"},
		{"no backtick", []string{billHead, strings.TrimPrefix(billPay, "`"), billCaption, "`1,`12.34,`0.00,`0.00,`0.07,`12.34,`0.00"}, "", "backtick"},
		{"short row", []string{billHead, sub(billPay, ",`0.60%", ""), billCaption, "`1,`12.34,`0.00,`0.00,`0.07,`12.34,`0.00"}, "", "26 cells"},
		{"count", []string{billHead, billPay, billCaption, "`2,`12.34,`0.00,`0.00,`0.07,`12.34,`0.00"}, "", "总交易单数 is 2"},
		{"settle total", []string{billHead, billPay, billCaption, "`1,`12.35,`0.00,`0.00,`0.07,`12.34,`0.00"}, "", "应结订单总金额 is 12.35, its rows add up to 12.34"},
		{"fee total", []string{billHead, billPay, billCaption, "`1,`12.34,`0.00,`0.00,`0.08,`12.34,`0.00"}, "", "手续费总金额"},
		{"order total", []string{billHead, billPay, billCaption, "`1,`12.34,`0.00,`0.00,`0.07,`12.33,`0.00"}, "", "订单总金额"},
		{"sub-fen fee", []string{billHead, sub(billPay, "0.07000", "0.07400"), billCaption, "`1,`12.34,`0.00,`0.00,`0.07,`12.34,`0.00"}, "", "below a fen"},
		{"float amount", []string{billHead, sub(billPay, "`12.34,`0.00,`0", "`1.234e1,`0.00,`0"), billCaption, "`1,`12.34,`0.00,`0.00,`0.07,`12.34,`0.00"}, "", "应结订单金额"},
		{"zero payment", []string{billHead, billPay2 + "", billCaption, "`1,`0.10,`0.00,`0.00,`0.00,`0.10,`0.00"}, "", ""},
		{"other merchant", []string{billHead, billPay, billCaption, "`1,`12.34,`0.00,`0.00,`0.07,`12.34,`0.00"}, "1900000001", "商户号"},
		{"bad time", []string{billHead, sub(billPay, "2026-12-06 10:58:11", "2026/12/06 10:58"), billCaption, "`1,`12.34,`0.00,`0.00,`0.07,`12.34,`0.00"}, "", "交易时间"},
		{"refund without number", []string{billHead, sub(billRefund, "`R0001cccc", "`"), billCaption, "`1,`0.00,`2.00,`0.00,`-0.01,`0.00,`2.00"}, "", "商户退款单号"},
		{"lowercase currency", []string{billHead, sub(billPay, "`CNY", "`cny"), billCaption, "`1,`12.34,`0.00,`0.00,`0.07,`12.34,`0.00"}, "", "货币种类"},
		{"not utf-8", []string{billHead, sub(billPay, "top-up", "\xff\xfe"), billCaption, "`1,`12.34,`0.00,`0.00,`0.07,`12.34,`0.00"}, "", "UTF-8"},
		{"trailing garbage", []string{billHead, billPay, billCaption, "`1,`12.34,`0.00,`0.00,`0.07,`12.34,`0.00", "extra"}, "", "summary column 1"},
	} {
		st, err := wechatpay.ParseTradeBill(bill(tc.lines...), tc.mchid)
		if tc.name == "zero payment" {
			// 0.10 is a valid payment; it is the control case of the table.
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			continue
		}
		if !errors.Is(err, payments.ErrStatement) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: ParseTradeBill = %+v, %v; want ErrStatement naming %q", tc.name, st, err, tc.want)
		}
	}
}

// FuzzParseTradeBill: whatever the bytes, the parser returns an error or
// a statement whose rows agree with its summary; it never panics.
func FuzzParseTradeBill(f *testing.F) {
	f.Add(bill(billHead, billPay, billPay2, billRefund, billCaption, billSum))
	f.Add(bill(billHead, billPay, billCaption, "`1,`12.34,`0.00,`0.00,`0.07,`12.34,`0.00"))
	f.Add(bill(billHead, billCaption, "`0,`0.00,`0.00,`0.00,`0.00,`0.00,`0.00"))
	f.Add([]byte("`,`\n\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := wechatpay.ParseTradeBill(data, "")
		if err != nil {
			if !errors.Is(err, payments.ErrStatement) {
				t.Fatalf("error %v is not ErrStatement", err)
			}
			return
		}
		var fees int64
		for _, r := range st.Rows {
			if r.Amount.Minor <= 0 || (r.Kind != payments.RowPayment && r.Kind != payments.RowRefund) || r.OrderNo == "" {
				t.Fatalf("row %+v", r)
			}
			fees += r.Fee
		}
		if fees != st.Fees {
			t.Fatalf("fees %d, rows %d", st.Fees, fees)
		}
	})
}
