package alipay

import (
	"archive/zip"
	"bytes"
	"errors"
	"strings"
	"testing"

	"golang.org/x/text/encoding/simplifiedchinese"

	"beaconvend/cloud/payments"
)

var day = payments.Day{Year: 2026, Month: 11, Day: 30}

const header = "支付宝交易号,商户订单号,业务类型,商品名称,创建时间,完成时间,门店编号,门店名称,操作员,终端号,对方账户,订单金额（元）,商家实收（元）,支付宝红包（元）,集分宝（元）,支付宝优惠（元）,商家优惠（元）,券核销金额（元）,券名称,商家红包消费金额（元）,卡消费金额（元）,退款批次号/请求号,服务费（元）,分润（元）,备注"

// detail is a detail file as Alipay writes it (cells padded with a tab).
func detail(rows []string, paySummary, refundSummary string) string {
	lines := []string{
		"#支付宝业务明细查询", "#账号：[20881020000000000156]",
		"#起始日期：[2026年11月30日 00:00:00]   终止日期：[2026年11月30日 23:59:59]",
		"#-----------------------------------------业务明细列表----------------------------------------",
		header,
	}
	lines = append(lines, rows...)
	lines = append(lines, "#-----------------------------------------业务明细列表结束------------------------------------",
		paySummary, refundSummary, "#导出时间：[2026年12月01日 09:00:00]")
	return strings.Join(lines, "\r\n") + "\r\n"
}

func row(tradeNo, orderNo, kind, total, received, refundNo, fee string) string {
	c := []string{tradeNo, orderNo, kind, "水", "2026-11-30 10:00:00", "2026-11-30 10:00:05", "", "", "", "", "a***@b.com",
		total, received, "0.00", "0.00", "0.00", "0.00", "0.00", "", "0.00", "0.00", refundNo, fee, "0.00", ""}
	for i := range c {
		c[i] += "\t"
	}
	return strings.Join(c, ",")
}

func gbk(t testing.TB, s string) []byte {
	b, err := simplifiedchinese.GBK.NewEncoder().Bytes([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var goodRows = []string{
	row("2026113022001", "T1", "交易", "10.00", "10.00", "", "-0.06"),
	row("2026113022002", "T2", "交易", "25.50", "25.50", "", "-0.15"),
	row("2026113022002", "T2", "退款", "25.50", "-5.50", "R1", "0.03"),
}

const goodPay, goodRefund = "#交易合计：2笔，商家实收：￥35.50元，商家优惠：￥0.00元", "#退款合计：1笔，商家实收：￥-5.50元，商家优惠：￥0.00元"

func TestParseDetail(t *testing.T) {
	st, err := parseDetail(gbk(t, detail(goodRows, goodPay, goodRefund)), day)
	if err != nil {
		t.Fatal(err)
	}
	if st.Payments != 3550 || st.Refunds != 550 || st.Fees != 18 || len(st.Rows) != 3 {
		t.Fatalf("statement = %+v", st)
	}
	r := st.Rows[2]
	if r.Kind != payments.RowRefund || r.Amount.Minor != 550 || r.RefundNo != "R1" || r.ProviderRefundID != "2026113022002/R1" || r.Fee != -3 || r.OrderNo != "T2" {
		t.Fatalf("refund row = %+v", r)
	}
}

func TestParseDetailRefuses(t *testing.T) {
	for _, tc := range []struct {
		name, text, want string
	}{
		{"summary count", detail(goodRows, "#交易合计：3笔，商家实收：￥35.50元，商家优惠：￥0.00元", goodRefund), "交易合计"},
		{"summary amount", detail(goodRows, goodPay, "#退款合计：1笔，商家实收：￥-5.51元，商家优惠：￥0.00元"), "退款合计"},
		{"no refund summary", detail(goodRows, goodPay, ""), "no 退款合计"},
		{"summary twice", detail(goodRows, goodPay, goodPay), "second"},
		{"summary float", detail(goodRows, "#交易合计：2笔，商家实收：￥3.55e1元", goodRefund), "not understood"},
		{"24 columns", detail([]string{strings.TrimSuffix(goodRows[0], ",\t")}, goodPay, goodRefund), "24 columns"},
		{"three decimals", detail([]string{row("1", "T1", "交易", "10.001", "10.00", "", "0.00")}, goodPay, goodRefund), "订单金额"},
		{"exponent", detail([]string{row("1", "T1", "交易", "1e1", "10.00", "", "0.00")}, goodPay, goodRefund), "订单金额"},
		{"unknown type", detail([]string{row("1", "T1", "转账", "10.00", "10.00", "", "0.00")}, goodPay, goodRefund), "业务类型"},
		{"positive refund", detail([]string{row("1", "T1", "退款", "10.00", "5.00", "R1", "0.00")}, goodPay, goodRefund), "refund"},
		{"refund without number", detail([]string{row("1", "T1", "退款", "10.00", "-5.00", "", "0.00")}, goodPay, goodRefund), "refund"},
		{"no order number", detail([]string{row("1", "", "交易", "10.00", "10.00", "", "0.00")}, goodPay, goodRefund), "商户订单号"},
		{"bad time", detail([]string{strings.Replace(row("1", "T1", "交易", "10.00", "10.00", "", "0.00"), "2026-11-30 10:00:05", "30/11/2026", 1)}, goodPay, goodRefund), "完成时间"},
		{"other day", strings.Replace(detail(goodRows, goodPay, goodRefund), "2026年11月30日 00", "2026年11月29日 00", 1), "starts on"},
		{"renamed column", strings.Replace(detail(goodRows, goodPay, goodRefund), "服务费（元）", "手续费（元）", 1), "column 23"},
		{"no header", "#交易合计：0笔，商家实收：￥0.00元\r\n", "no column header"},
		{"huge amount", detail([]string{row("1", "T1", "交易", "999999999999999.99", "10.00", "", "0.00")}, goodPay, goodRefund), "订单金额"},
	} {
		_, err := parseDetail(gbk(t, tc.text), day)
		if !errors.Is(err, payments.ErrStatement) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want ErrStatement naming %q", tc.name, err, tc.want)
		}
	}
}

// Alipay names the files in its zip in GBK, without the UTF-8 flag.
func TestParseBillZipGBKNames(t *testing.T) {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for name, body := range map[string]string{
		"20881020000000000156_20261130_业务明细(汇总).csv": "#汇总\r\n",
		"20881020000000000156_20261130_业务明细.csv":     detail(goodRows, goodPay, goodRefund),
	} {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: string(gbk(t, name)), NonUTF8: true, Method: zip.Deflate})
		if err != nil {
			t.Fatal(err)
		}
		w.Write(gbk(t, body))
	}
	zw.Close()
	st, err := parseBillZip(buf.Bytes(), day)
	if err != nil || len(st.Rows) != 3 {
		t.Fatalf("parseBillZip = %+v, %v", st, err)
	}
	if _, err := parseBillZip([]byte("PK\x03\x04 not a zip"), day); !errors.Is(err, payments.ErrStatement) {
		t.Fatalf("not a zip: %v", err)
	}
}

// FuzzParseDetail: whatever the bytes, no panic, and a statement that
// parses is consistent with its rows. CI runs the seeds; go test -fuzz
// runs more.
func FuzzParseDetail(f *testing.F) {
	f.Add(gbk(f, detail(goodRows, goodPay, goodRefund)))
	f.Add(gbk(f, detail(nil, "#交易合计：0笔，商家实收：￥0.00元", "#退款合计：0笔，商家实收：￥0.00元")))
	f.Add(gbk(f, detail(goodRows[:1], "#交易合计：1笔，商家实收：￥10.00元", "#退款合计：0笔，商家实收：￥0.00元")))
	f.Add([]byte("\xff\xfe,,,\r\n#"))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := parseDetail(b, day)
		if err != nil {
			if !errors.Is(err, payments.ErrStatement) {
				t.Fatalf("error %v is not ErrStatement", err)
			}
			return
		}
		var ref int64
		for _, r := range st.Rows {
			if r.Amount.Minor <= 0 || r.Amount.Currency != "CNY" || r.OrderNo == "" {
				t.Fatalf("row %+v", r)
			}
			switch r.Kind {
			case payments.RowPayment:
			case payments.RowRefund:
				ref += r.Amount.Minor
				if r.RefundNo == "" {
					t.Fatalf("refund row without a number: %+v", r)
				}
			default:
				t.Fatalf("row kind %q", r.Kind)
			}
		}
		if ref != st.Refunds {
			t.Fatalf("refund rows add up to %d, statement says %d", ref, st.Refunds)
		}
	})
}
