package alipay

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	sdk "github.com/smartwalle/alipay/v3"
	"golang.org/x/text/encoding/simplifiedchinese"

	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/payments"
)

// billColumns are the 25 columns of the trade bill's detail file
// (业务明细), in order.
var billColumns = [25]string{
	"支付宝交易号", "商户订单号", "业务类型", "商品名称", "创建时间", "完成时间", "门店编号", "门店名称", "操作员", "终端号", "对方账户",
	"订单金额（元）", "商家实收（元）", "支付宝红包（元）", "集分宝（元）", "支付宝优惠（元）", "商家优惠（元）", "券核销金额（元）", "券名称",
	"商家红包消费金额（元）", "卡消费金额（元）", "退款批次号/请求号", "服务费（元）", "分润（元）", "备注",
}

const (
	colTradeNo   = 0
	colOrderNo   = 1
	colType      = 2
	colDone      = 5
	colTotal     = 11
	colReceived  = 12
	colRefundNo  = 21
	colFee       = 22
	billPayment  = "交易"
	billRefund   = "退款"
	billMaxLines = 2_000_000
	maxAmount    = 100_000_000_00 // fen: Alipay's largest trade, 100000000.00 yuan
)

var (
	summaryLine = regexp.MustCompile(`^#(交易|退款)合计：(\d{1,9})笔，商家实收：￥(-?\d{1,15}(?:\.\d{1,2})?)元`)
	startLine   = regexp.MustCompile(`^#起始日期：\[(\d{4})年(\d{2})月(\d{2})日`)
)

// Statement downloads the day's trade bill: it asks
// alipay.data.dataservice.bill.downloadurl.query for the bill's URL,
// downloads the zip, finds its detail file (…_业务明细.csv, GBK), and
// normalizes its rows. The summary lines (交易合计, 退款合计: count and
// merchant receipts) must equal the rows, or the statement is
// ErrStatement. Amounts are yuan parsed exactly into fen.
func (c *channel) Statement(ctx context.Context, day payments.Day) (payments.Statement, error) {
	if _, err := payments.ParseDay(day.String()); err != nil || day.Year < 2000 {
		return payments.Statement{}, vend.Errorf(payments.ErrDay, "alipay: statement day %v", day)
	}
	rsp, err := c.client.BillDownloadURLQuery(ctx, sdk.BillDownloadURLQuery{BillType: "trade", BillDate: day.String()})
	if err := check("bill download url", err, errOf(rsp)); err != nil {
		return payments.Statement{}, err
	}
	u := rsp.BillDownloadURL
	if !strings.HasPrefix(u, "https://") && !strings.HasPrefix(u, "http://") {
		return payments.Statement{}, vend.Errorf(payments.ErrProvider, "alipay: bill %s: download URL %q", day, u)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return payments.Statement{}, vend.Errorf(payments.ErrProvider, "alipay: bill %s: %v", day, err)
	}
	res, err := c.http.Do(req)
	if err != nil {
		return payments.Statement{}, vend.Errorf(payments.ErrProvider, "alipay: bill %s: download: %v", day, err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return payments.Statement{}, vend.Errorf(payments.ErrProvider, "alipay: bill %s: download: HTTP %d", day, res.StatusCode)
	}
	data, err := io.ReadAll(io.LimitReader(res.Body, maxBill+1))
	if err != nil {
		return payments.Statement{}, vend.Errorf(payments.ErrProvider, "alipay: bill %s: download: %v", day, err)
	}
	if len(data) > maxBill {
		return payments.Statement{}, vend.Errorf(payments.ErrStatement, "alipay: bill %s: over %d bytes", day, maxBill)
	}
	return parseBillZip(data, day)
}

// parseBillZip finds the detail file in the bill's zip and parses it.
// Alipay writes the names of the files in GBK without the zip's UTF-8
// flag; both are understood.
func parseBillZip(data []byte, day payments.Day) (payments.Statement, error) {
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return payments.Statement{}, vend.Errorf(payments.ErrStatement, "alipay: bill %s: not a zip: %v", day, err)
	}
	var detail *zip.File
	for _, f := range zr.File {
		name := f.Name
		if !utf8.ValidString(name) {
			if b, err := simplifiedchinese.GBK.NewDecoder().String(name); err == nil {
				name = b
			}
		}
		if strings.HasSuffix(name, "业务明细.csv") {
			if detail != nil {
				return payments.Statement{}, vend.Errorf(payments.ErrStatement, "alipay: bill %s: two detail files", day)
			}
			detail = f
		}
	}
	if detail == nil {
		return payments.Statement{}, vend.Errorf(payments.ErrStatement, "alipay: bill %s: no detail file (…业务明细.csv) in the zip", day)
	}
	rc, err := detail.Open()
	if err != nil {
		return payments.Statement{}, vend.Errorf(payments.ErrStatement, "alipay: bill %s: %v", day, err)
	}
	defer rc.Close()
	raw, err := io.ReadAll(io.LimitReader(rc, maxBill+1))
	if err != nil {
		return payments.Statement{}, vend.Errorf(payments.ErrStatement, "alipay: bill %s: unzip: %v", day, err)
	}
	if len(raw) > maxBill {
		return payments.Statement{}, vend.Errorf(payments.ErrStatement, "alipay: bill %s: detail file over %d bytes", day, maxBill)
	}
	return parseDetail(raw, day)
}

// parseDetail parses the GBK detail file of a trade bill.
func parseDetail(gbk []byte, day payments.Day) (payments.Statement, error) {
	text, err := simplifiedchinese.GBK.NewDecoder().Bytes(gbk)
	if err != nil {
		return payments.Statement{}, vend.Errorf(payments.ErrStatement, "alipay: bill %s: not GBK: %v", day, err)
	}
	st := payments.Statement{Channel: Name, Day: day, Currency: currency}
	bad := func(line int, format string, args ...any) (payments.Statement, error) {
		return payments.Statement{}, vend.Errorf(payments.ErrStatement, "alipay: bill %s: line %d: %s", day, line, fmt.Sprintf(format, args...))
	}
	type total struct {
		seen     bool
		count    int64
		received int64
	}
	var (
		sum      [2]total // from the rows: payments, refunds
		summary  [2]total // from the summary lines
		inHeader = true
		started  bool
	)
	lines := strings.Split(strings.ReplaceAll(string(text), "\r\n", "\n"), "\n")
	if len(lines) > billMaxLines {
		return bad(0, "over %d lines", billMaxLines)
	}
	for i, line := range lines {
		n := i + 1
		if line == "" {
			continue
		}
		if strings.HasPrefix(line, "#") {
			if m := startLine.FindStringSubmatch(line); m != nil {
				y, _ := strconv.Atoi(m[1])
				mo, _ := strconv.Atoi(m[2])
				d, _ := strconv.Atoi(m[3])
				if y != day.Year || time.Month(mo) != day.Month || d != day.Day {
					return bad(n, "bill starts on %s-%s-%s, not on %s", m[1], m[2], m[3], day)
				}
				started = true
			}
			if m := summaryLine.FindStringSubmatch(line); m != nil {
				k := 0
				if m[1] == billRefund {
					k = 1
				}
				if summary[k].seen {
					return bad(n, "second %s合计 line", m[1])
				}
				cnt, _ := strconv.ParseInt(m[2], 10, 64)
				amt, err := payments.ParseMinor(m[3])
				if err != nil {
					return bad(n, "summary amount %q", m[3])
				}
				summary[k] = total{seen: true, count: cnt, received: amt}
			} else if strings.Contains(line, "合计") {
				return bad(n, "summary line not understood: %q", clip(line))
			}
			continue
		}
		cells, err := csv.NewReader(strings.NewReader(line)).Read()
		if err != nil {
			return bad(n, "csv: %v", err)
		}
		if len(cells) != len(billColumns) {
			return bad(n, "%d columns, want %d", len(cells), len(billColumns))
		}
		for j := range cells {
			cells[j] = strings.Trim(cells[j], " \t")
		}
		if inHeader {
			for j, want := range billColumns {
				if cells[j] != want {
					return bad(n, "column %d is %q, want %q", j+1, clip(cells[j]), want)
				}
			}
			inHeader = false
			continue
		}
		row, received, err := billRow(cells)
		if err != nil {
			return bad(n, "%v", err)
		}
		k := 0
		if row.Kind == payments.RowRefund {
			k = 1
		}
		sum[k].count++
		sum[k].received += received
		st.Fees += row.Fee
		st.Rows = append(st.Rows, row)
	}
	if inHeader {
		return bad(len(lines), "no column header")
	}
	if !started {
		return bad(len(lines), "no #起始日期 line")
	}
	for k, name := range []string{billPayment, billRefund} {
		if !summary[k].seen {
			return bad(len(lines), "no %s合计 line", name)
		}
		if summary[k].count != sum[k].count || summary[k].received != sum[k].received {
			return bad(len(lines), "%s合计 says %d rows, %s yuan; the rows add up to %d, %s yuan", name,
				summary[k].count, payments.FormatMinor(summary[k].received), sum[k].count, payments.FormatMinor(sum[k].received))
		}
	}
	st.Payments = summary[0].received
	st.Refunds = -summary[1].received
	return st, nil
}

// billRow normalizes one detail row; it also returns the row's merchant
// receipt (商家实收, negative on a refund) that the summary adds up.
func billRow(c []string) (payments.StatementRow, int64, error) {
	var row payments.StatementRow
	money := func(col int) (int64, error) {
		v, err := payments.ParseMinor(c[col])
		if err != nil || v > maxAmount || v < -maxAmount {
			return 0, fmt.Errorf("%s %q is not an amount", billColumns[col], clip(c[col]))
		}
		return v, nil
	}
	if c[colOrderNo] == "" || c[colTradeNo] == "" {
		return row, 0, fmt.Errorf("no %s or %s", billColumns[colTradeNo], billColumns[colOrderNo])
	}
	at, err := time.ParseInLocation(time.DateTime, c[colDone], shanghai)
	if err != nil {
		return row, 0, fmt.Errorf("%s %q is not a time", billColumns[colDone], clip(c[colDone]))
	}
	total, err := money(colTotal)
	if err != nil {
		return row, 0, err
	}
	received, err := money(colReceived)
	if err != nil {
		return row, 0, err
	}
	fee, err := money(colFee)
	if err != nil {
		return row, 0, err
	}
	row = payments.StatementRow{At: at, OrderNo: c[colOrderNo], ProviderTxID: c[colTradeNo], Fee: -fee, Status: c[colType]}
	switch c[colType] {
	case billPayment:
		if total <= 0 || received < 0 || received > total {
			return row, 0, fmt.Errorf("payment of %s yuan, receipt %s yuan", c[colTotal], c[colReceived])
		}
		row.Kind = payments.RowPayment
		row.Amount = vend.Amount{Minor: total, Currency: currency}
	case billRefund:
		if received >= 0 || c[colRefundNo] == "" {
			return row, 0, fmt.Errorf("refund of %s yuan with request number %q", c[colReceived], clip(c[colRefundNo]))
		}
		row.Kind = payments.RowRefund
		row.RefundNo = c[colRefundNo]
		row.ProviderRefundID = c[colTradeNo] + "/" + c[colRefundNo]
		row.Amount = vend.Amount{Minor: -received, Currency: currency}
	default:
		return row, 0, fmt.Errorf("%s %q is neither %s nor %s", billColumns[colType], clip(c[colType]), billPayment, billRefund)
	}
	return row, received, nil
}

func clip(s string) string {
	if len(s) > 40 {
		for i := 40; i > 0; i-- {
			if utf8.RuneStart(s[i]) {
				return s[:i] + "…"
			}
		}
	}
	return s
}
