package webcheckout_test

import "github.com/chromedp/chromedp"

func chromedpFull() chromedp.Action[[]byte] { return chromedp.FullScreenshot(100) }
