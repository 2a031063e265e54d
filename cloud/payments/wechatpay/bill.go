package wechatpay

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/payments"
)

// The 27 columns of a trade bill of type ALL, in WeChat Pay's order.
var billColumns = [...]string{
	"交易时间", "公众账号ID", "商户号", "特约商户号", "设备号", "微信订单号", "商户订单号", "用户标识",
	"交易类型", "交易状态", "付款银行", "货币种类", "应结订单金额", "代金券金额", "微信退款单号",
	"商户退款单号", "退款金额", "充值券退款金额", "退款类型", "退款状态", "商品名称", "商户数据包",
	"手续费", "费率", "订单金额", "申请退款金额", "费率备注",
}

// Column indexes.
const (
	colTime = iota
	colAppID
	colMchID
	colSubMchID
	colDevice
	colTxID
	colOrderNo
	colOpenID
	colTradeType
	colTradeState
	colBank
	colCurrency
	colSettle
	colCoupon
	colRefundID
	colRefundNo
	colRefund
	colCouponRefund
	colRefundType
	colRefundState
	colGoods
	colAttach
	colFee
	colRate
	colTotal
	colRefundAsked
	colRateNote
)

// The 7 summary columns.
var summaryColumns = [...]string{
	"总交易单数", "应结订单总金额", "退款总金额", "充值券退款总金额", "手续费总金额", "订单总金额", "申请退款总金额",
}

// Which row column each summary amount totals.
var summaryOf = [...]int{-1, colSettle, colRefund, colCouponRefund, colFee, colTotal, colRefundAsked}

// shanghai is WeChat Pay's time zone (UTC+8, no daylight saving).
var shanghai = time.FixedZone("CST", 8*3600)

// ParseTradeBill parses a trade bill of type ALL (the CSV the trade bill
// download serves) into a statement: one refund row per line whose
// 交易状态 is REFUND, one payment row per other line (SUCCESS, or another
// status such as REVOKED, kept in Status for reconciliation), amounts in fen, the summary's totals, each
// checked against the rows. When mchid is not empty every row must be of
// that merchant. Any deviation is payments.ErrStatement naming the line.
// Day is left zero: the caller knows which day it asked for.
func ParseTradeBill(data []byte, mchid string) (payments.Statement, error) {
	bad := func(line int, format string, args ...any) (payments.Statement, error) {
		return payments.Statement{}, vend.Errorf(payments.ErrStatement, "wechatpay: trade bill line %d: %s", line, fmt.Sprintf(format, args...))
	}
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	if !utf8.Valid(data) {
		return bad(0, "not UTF-8")
	}
	lines := strings.Split(string(data), "\n")
	for i := range lines {
		lines[i] = strings.TrimSuffix(lines[i], "\r")
	}
	for len(lines) > 0 && lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	if len(lines) < 3 {
		return bad(len(lines), "%d lines, want a header, rows, a summary caption and a summary", len(lines))
	}
	if head := strings.Split(lines[0], ","); len(head) != len(billColumns) {
		return bad(1, "header has %d columns, want %d", len(head), len(billColumns))
	} else {
		for i, h := range head {
			if strings.TrimSpace(h) != billColumns[i] {
				return bad(1, "column %d is %q, want %q", i+1, h, billColumns[i])
			}
		}
	}
	caption := len(lines) - 2
	if cap := strings.Split(lines[caption], ","); len(cap) != len(summaryColumns) {
		return bad(caption+1, "summary caption has %d columns, want %d", len(cap), len(summaryColumns))
	} else {
		for i, h := range cap {
			if strings.TrimSpace(h) != summaryColumns[i] {
				return bad(caption+1, "summary column %d is %q, want %q", i+1, h, summaryColumns[i])
			}
		}
	}
	st := payments.Statement{Channel: Name, Currency: currency}
	var sums [len(billColumns)]int64
	for i := 1; i < caption; i++ {
		cells, err := cellsOf(lines[i], len(billColumns))
		if err != nil {
			return bad(i+1, "%v", err)
		}
		for _, col := range summaryOf[1:] {
			v, err := billAmount(cells[col])
			if err != nil {
				return bad(i+1, "%s: %v", billColumns[col], err)
			}
			if sums[col], err = add(sums[col], v); err != nil {
				return bad(i+1, "%s: %v", billColumns[col], err)
			}
		}
		row, err := billRow(cells, mchid)
		if err != nil {
			return bad(i+1, "%v", err)
		}
		st.Rows = append(st.Rows, row)
	}
	sum, err := cellsOf(lines[caption+1], len(summaryColumns))
	if err != nil {
		return bad(caption+2, "summary: %v", err)
	}
	n, err := strconv.Atoi(sum[0])
	if err != nil || n < 0 {
		return bad(caption+2, "%s %q: not a count", summaryColumns[0], sum[0])
	}
	if n != len(st.Rows) {
		return bad(caption+2, "%s is %d, the bill has %d rows", summaryColumns[0], n, len(st.Rows))
	}
	for i, col := range summaryOf[1:] {
		v, err := billAmount(sum[i+1])
		if err != nil {
			return bad(caption+2, "%s: %v", summaryColumns[i+1], err)
		}
		if v != sums[col] {
			return bad(caption+2, "%s is %s, its rows add up to %s", summaryColumns[i+1], payments.FormatMinor(v), payments.FormatMinor(sums[col]))
		}
		switch col {
		case colSettle:
			st.Payments = v
		case colRefund:
			st.Refunds = v
		case colFee:
			st.Fees = v
		}
	}
	return st, nil
}

// cellsOf splits a line of backtick-prefixed cells: `a,`b,`c.
func cellsOf(line string, want int) ([]string, error) {
	if !strings.HasPrefix(line, "`") {
		return nil, fmt.Errorf("does not start with a backtick cell")
	}
	cells := strings.Split(line[1:], ",`")
	if len(cells) != want {
		return nil, fmt.Errorf("%d cells, want %d", len(cells), want)
	}
	for i := range cells {
		cells[i] = strings.TrimSpace(cells[i])
	}
	return cells, nil
}

// billRow normalizes one row.
func billRow(c []string, mchid string) (payments.StatementRow, error) {
	var r payments.StatementRow
	if mchid != "" && c[colMchID] != mchid {
		return r, fmt.Errorf("商户号 %q, want %q", c[colMchID], mchid)
	}
	at, err := time.ParseInLocation(time.DateTime, c[colTime], shanghai)
	if err != nil {
		return r, fmt.Errorf("交易时间 %q: want 2006-01-02 15:04:05", c[colTime])
	}
	cur := vend.Currency(c[colCurrency])
	if len(cur) != 3 || strings.ToUpper(string(cur)) != string(cur) {
		return r, fmt.Errorf("货币种类 %q: want an ISO 4217 code", cur)
	}
	fee, err := billAmount(c[colFee])
	if err != nil {
		return r, fmt.Errorf("手续费: %v", err)
	}
	r.At, r.OrderNo, r.ProviderTxID, r.Fee = at, c[colOrderNo], c[colTxID], fee
	if r.OrderNo == "" || r.ProviderTxID == "" {
		return r, fmt.Errorf("no 商户订单号 or 微信订单号")
	}
	switch state := c[colTradeState]; {
	case state != "REFUND" && state != "" && strings.ToUpper(state) == state && !strings.ContainsAny(state, " ,`"):
		v, err := payments.ParseMinor(c[colSettle])
		if err != nil || v <= 0 {
			return r, fmt.Errorf("应结订单金额 %q: want an amount above zero", c[colSettle])
		}
		r.Kind, r.Amount, r.Status = payments.RowPayment, vend.Amount{Minor: v, Currency: cur}, c[colTradeState]
	case state == "REFUND":
		v, err := payments.ParseMinor(c[colRefund])
		if err != nil || v <= 0 {
			return r, fmt.Errorf("退款金额 %q: want an amount above zero", c[colRefund])
		}
		if c[colRefundNo] == "" || c[colRefundID] == "" || c[colRefundState] == "" {
			return r, fmt.Errorf("refund row without 商户退款单号, 微信退款单号 or 退款状态")
		}
		r.Kind, r.Amount, r.Status = payments.RowRefund, vend.Amount{Minor: v, Currency: cur}, c[colRefundState]
		r.RefundNo, r.ProviderRefundID = c[colRefundNo], c[colRefundID]
	default:
		return r, fmt.Errorf("交易状态 %q: want SUCCESS, REFUND or another status word", c[colTradeState])
	}
	return r, nil
}

// billAmount parses a yuan amount cell exactly: an empty cell is zero;
// decimal places beyond the second must be zeros (fees are printed with
// more places).
func billAmount(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	if whole, frac, ok := strings.Cut(s, "."); ok && len(frac) > 2 {
		if strings.Trim(frac[2:], "0") != "" {
			return 0, fmt.Errorf("%q: below a fen", s)
		}
		s = whole + "." + frac[:2]
	}
	return payments.ParseMinor(s)
}

// add adds without overflowing.
func add(a, b int64) (int64, error) {
	s := a + b
	if (b > 0 && s < a) || (b < 0 && s > a) {
		return 0, fmt.Errorf("total overflows")
	}
	return s, nil
}
