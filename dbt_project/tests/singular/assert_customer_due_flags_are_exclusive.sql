-- dim_customers: due and overdue never overlap, both need an expected date, an overdue
-- customer is past the expected date by at most the overdue expiry (past it: lapsed), the
-- flags are the repurchase status, and a customer with two or more orders always has their
-- own median gap, which decides unless it is under half a day (every repeat on the same day).
select customer_id, expected_next_order_date, is_due, is_overdue
from {{ ref('dim_customers') }}
where (is_due and is_overdue)
    or (expected_next_order_date is null and (is_due or is_overdue))
    or (is_overdue and not (days_until_expected_order between -overdue_expiry_days and -1))
    or (is_due <> coalesce(repurchase_status = 'due', false))
    or (is_overdue <> coalesce(repurchase_status = 'overdue', false))
    or (orders_count >= 2 and (median_gap_days is null
        or (median_gap_days >= 0.5) <> (expected_gap_basis = 'customer')))
    or (orders_count = 1 and (median_gap_days is not null or expected_gap_basis = 'customer'))
