-- dim_customers: churned is exactly "not active"; RFM scores exist exactly for active
-- customers, and only inactive customers are 'Churned'; activity follows the window.
select customer_id, days_since_last_order, is_active, is_churned, recency_score, rfm_segment
from {{ ref('dim_customers') }}
where is_churned = is_active
    or is_active <> (days_since_last_order < {{ var('activity_window_days') }})
    or (is_active and (recency_score is null or frequency_score is null
        or monetary_score is null or rfm_segment = 'Churned'))
    or (not is_active and (recency_score is not null or frequency_score is not null
        or monetary_score is not null or rfm_segment <> 'Churned'))
